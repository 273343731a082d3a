"""hlrp_core.models"""
