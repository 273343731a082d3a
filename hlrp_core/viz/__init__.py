"""hlrp_core.viz"""
