"""hlrp_core.analysis"""
