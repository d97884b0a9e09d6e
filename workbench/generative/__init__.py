"""Generative models: PFGM++ (Xu et al. 2023, with EDM as D = inf) and discrete-time diffusion with
the corrected noise schedules and sample steps of Lin et al. 2024; kinds `pfgmpp` and `diffusion`."""
