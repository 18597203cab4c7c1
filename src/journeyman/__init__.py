"""journeyman: customer journeys as code.

The public surface is what this module exports; everything else is private and may
change. Load a workspace folder with :func:`load_workspace`, run its journeys on a virtual
clock with :class:`Simulator`, or drive the pure :class:`Engine` yourself.
"""

from journeyman.domain.engine import Engine, Outcome
from journeyman.domain.expressions import Expression, ExpressionError, compile_expression
from journeyman.domain.ingest import InvalidEvent
from journeyman.domain.model import Journey, Workspace
from journeyman.domain.problems import Problem
from journeyman.domain.state import (
    CallAction,
    Event,
    Instance,
    Profile,
    SendMessage,
    StepRecord,
)
from journeyman.errors import JourneymanError, WorkspaceInvalid, WorkspaceNotFound
from journeyman.journey_tests import TestResult, run_test, run_tests
from journeyman.simulator import Simulator
from journeyman.workspace import Loaded, load_workspace

__version__ = "0.1.0"

__all__ = [
    "CallAction",
    "Engine",
    "Event",
    "Expression",
    "ExpressionError",
    "Instance",
    "InvalidEvent",
    "Journey",
    "JourneymanError",
    "Loaded",
    "Outcome",
    "Problem",
    "Profile",
    "SendMessage",
    "Simulator",
    "StepRecord",
    "TestResult",
    "Workspace",
    "WorkspaceInvalid",
    "WorkspaceNotFound",
    "__version__",
    "compile_expression",
    "load_workspace",
    "run_test",
    "run_tests",
]
