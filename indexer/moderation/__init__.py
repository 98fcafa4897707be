"""What the operator decides about content: takedowns (takedowns.py)."""
