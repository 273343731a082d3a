"""hlrp_core.cluster"""
