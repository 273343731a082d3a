"""hlrp_core.ladder"""
