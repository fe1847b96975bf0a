"""The operators' side: the settings of the follow-up list, the figures and the dashboard.

What each one does is in docs/api.md (feedback, stats), docs/observability.md and
docs/dashboard.md. Sections of their own, so the other sections' module stays one reader's sitting.
"""

from __future__ import annotations

from pydantic import Field

from .config_sections import Section

__all__ = ["DashboardSettings", "FeedbackSettings", "StatsSettings"]


class DashboardSettings(Section):
    session_hours: float = Field(8.0, gt=0, le=168)
    """How long an operator stays signed in to /dashboard (from sign-in; not extended by use).
    A revoked key ends its sessions at the next request."""
    followups_shown: int = Field(50, ge=1, le=500)
    """Most follow-ups (low ratings) the dashboard lists, newest first."""
    dead_letters_shown: int = Field(5, ge=1, le=50)
    """How many of the newest dead-lettered webhook deliveries the dashboard names by id."""


class FeedbackSettings(Section):
    low_rating: int = Field(2, ge=0, le=5)
    """A rating at or below this is low: it raises the feedback.low webhook and puts the delivery
    on the operators' follow-up list until someone marks it handled (0: no rating is low)."""


class StatsSettings(Section):
    enabled: bool = True
    """Count the operators' figures (GET /v1/stats, docs/observability.md): one Redis call per
    counted fact on the event path. Off: nothing is counted; what was counted stays readable."""
    retention_days: int = Field(400, ge=1, le=3650)
    """How long an hour's counters are kept after the hour ends (400: a year against the last)."""
