"""hlrp_core.training"""
