"""The data connector Lambda's runtime: PII detection and masking, validation, lineage.

Standard library and boto3 only (the Lambda runtime has nothing else). Import the pieces from their
modules; the names below are the public API of detection and masking.
"""

from .masking import MaskingPolicy, Tokenizer, TokenNotFoundError, mask
from .pii import Finding, detect

__all__ = ["Finding", "MaskingPolicy", "TokenNotFoundError", "Tokenizer", "detect", "mask"]
