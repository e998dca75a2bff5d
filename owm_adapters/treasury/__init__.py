"""The treasury's 3-of-5 multisig wallet as PSBTs, over ``embit`` (SRS-LN-09, SRS-SEC-12)."""
