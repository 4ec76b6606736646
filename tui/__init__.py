"""Terminal UI of the appliance: the operator's view of one running daemon."""

from tui._app import PANES, ApplianceApp, help_markdown
from tui._client import (
    DaemonUnreachableError,
    EndpointMissingError,
    KeyRejectedError,
    NotApplianceError,
    RoleTooLowError,
    UiClient,
    check_daemon_url,
)
from tui._terminal import EXIT_NO_TERMINAL, terminal_problem

__all__ = [
    "EXIT_NO_TERMINAL",
    "PANES",
    "ApplianceApp",
    "DaemonUnreachableError",
    "EndpointMissingError",
    "KeyRejectedError",
    "NotApplianceError",
    "RoleTooLowError",
    "UiClient",
    "check_daemon_url",
    "help_markdown",
    "terminal_problem",
]
