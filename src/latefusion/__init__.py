"""latefusion: late-fusion multi-modal classification that learns from every modality.

Implements the uni-modal ensemble (UME), the uni-modal teacher (UMT), linear probes of each encoder
and the guide between them, after Du et al., "On Uni-Modal Feature Learning in Supervised
Multi-Modal Learning" (ICML 2023).
"""

__version__ = "0.1.0"
