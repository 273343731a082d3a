"""hlrp_core.viz: JupyterLab widgets and plain figure helpers.

One line in a notebook each::

    from hlrp_core.viz import DatasetExplorer, RunDashboard, CodeInspector
    DatasetExplorer()                       # embedded data: pairs o_t / o_t+k, action, state, schema; mix shares
    RunDashboard()                          # outputs/: status, failure class, curves, verdict, samples, config diff
    CodeInspector(artifact=".../laq_artifact.pt")   # Stage 1: pairs per latent code and their true actions

Figure helpers (return matplotlib Figures): ``plot_pair``, ``plot_run_curves``, ``plot_mix_shares``,
``plot_code_examples``, ``plot_code_action_scatter``, ``to_png``.
"""

from .figures import (plot_code_action_scatter, plot_code_examples, plot_mix_shares, plot_pair, plot_run_curves,
                      to_png)
from . import data_views
from .code_inspector import CodeInspector, latest_artifact
from .widgets import DatasetExplorer, RunDashboard

__all__ = ["CodeInspector", "DatasetExplorer", "RunDashboard", "data_views", "latest_artifact", "plot_code_action_scatter", "plot_code_examples",
           "plot_mix_shares", "plot_pair", "plot_run_curves", "to_png"]
