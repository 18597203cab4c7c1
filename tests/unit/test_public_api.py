import journeyman

EXPECTED = {
    "CallAction",
    "Engine",
    "Event",
    "Expression",
    "ExpressionError",
    "Instance",
    "InvalidEvent",
    "JourneymanError",
    "Journey",
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
}


def test_the_public_surface_is_exactly_the_curated_list() -> None:
    assert set(journeyman.__all__) == EXPECTED
    for name in journeyman.__all__:
        assert hasattr(journeyman, name), name


def test_errors_share_one_root() -> None:
    assert issubclass(journeyman.WorkspaceInvalid, journeyman.JourneymanError)
    assert issubclass(journeyman.WorkspaceNotFound, journeyman.JourneymanError)
