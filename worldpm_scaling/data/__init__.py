from .pairs import TokenizedPair

__all__ = ["TokenizedPair"]
