"""Status codes that every integrator returns, and their meanings.

Codes are small integers so compiled code can return them; `describe` turns one into words.
"""

SUCCESS = 0
MAX_STEPS = 1         # the step budget ran out before the last output time
STEP_UNDERFLOW = 2    # the step size fell below what floating point can resolve
NON_FINITE = 3        # a state or derivative became NaN or infinite
STIFF = 4             # explicit method detected stiffness (method="auto" then switches)
NOT_RUN = 5           # placeholder before a subject is solved
BAD_INPUT = 6         # a parameter or initial value was NaN/infinite
NEGATIVE_STATE = 7    # a non-negative state went below -(10 atol + rtol * its largest value so far)

MESSAGES = {
    SUCCESS: "success",
    MAX_STEPS: "too many steps",
    STEP_UNDERFLOW: "step size underflow",
    NON_FINITE: "non-finite state",
    STIFF: "problem is stiff for the explicit method",
    NOT_RUN: "not run",
    BAD_INPUT: "non-finite parameter or initial value",
    NEGATIVE_STATE: "a non-negative state went below zero (tolerances too loose for this subject)",
}


def describe(code: int) -> str:
    """One-word-ish description of a status code."""
    return MESSAGES.get(int(code), f"unknown status {code}")
