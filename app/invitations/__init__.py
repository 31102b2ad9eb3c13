"""Invitations: single-use survey links for frontends, under sampling and contact rules."""
