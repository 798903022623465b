"""Loading models offline and finding their parts."""
