"""Float models: the neurons (LIF, DLIF, surrogates, the Loihi-exact mode), the model zoo
(MLP, conv, PilotNet-style nets) and the fused training kernel with its C source."""

__all__: list = []
