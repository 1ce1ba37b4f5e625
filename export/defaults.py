"""Export and parity defaults, defined once: the library's signatures and the CLI's help
read them from here (a module with no imports, so ``edgecnn --help`` stays fast)."""

MAX_DROP_PP = 0.5          # parity: largest accepted accuracy drop vs float (pp)
MIN_AGREEMENT = 0.99       # parity: smallest accepted top-1 agreement with float
CALIBRATION_SAMPLES = 300  # int8 calibration: samples at most, balanced across classes
