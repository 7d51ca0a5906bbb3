"""The planner's refusal, apart from its modules so the entry can catch it without loading them."""


class PlanError(ValueError):
    """No plan meets the constraints; the message says which and what came closest."""
