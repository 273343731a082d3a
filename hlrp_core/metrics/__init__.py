"""hlrp_core.metrics"""
