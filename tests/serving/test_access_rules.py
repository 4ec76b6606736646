"""The access gate's pure parts: the role per route and the token headers."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.errors import ConfigError
from appliance.serving._access import (
    authorization_problem,
    check_exposure,
    required_role,
    sent_token,
)


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/health/live", None),
        ("GET", "/health/ready", None),
        ("GET", "/health", None),
        ("GET", "/metrics", "reader"),
        ("GET", "/v1/models", "reader"),
        ("GET", "/v1/predictions", "reader"),
        ("GET", "/schema/openapi.json", "reader"),
        ("HEAD", "/v1/alerts", "reader"),
        ("POST", "/v1/models/m/predict", "predictor"),
        ("POST", "/v1/models/m/feedback", "predictor"),
        ("POST", "/v1/models/m/explain", "predictor"),
        ("POST", "/v1/datasets/d/rows", "predictor"),
        ("POST", "/v1/admin/registry/runs/lookup", "reader"),
        ("POST", "/v1/admin/registry/models/m/promote", "operator"),
        ("POST", "/v1/admin/registry/models/m/rollback", "operator"),
        ("POST", "/v1/models/m/retrain", "operator"),
        ("POST", "/v1/alerts/3/acknowledge", "operator"),
        ("POST", "/v1/admin/ingest", "operator"),
        ("POST", "/v1/datasets/d/rejected/segment-1.jsonl/retry", "operator"),
        ("DELETE", "/v1/models", "operator"),
        ("GET", "/v1/admin/keys", "admin"),
        ("POST", "/v1/admin/keys/k/revoke", "admin"),
        ("GET", "/v1/admin/audit/verify", "admin"),
        ("POST", "/v1/admin/erase", "admin"),
        ("POST", "/v1/admin/datasets/flights/remove", "admin"),
        ("GET", "/v1/admin/datasets", "reader"),
        ("GET", "/v1/admin/erasures", "admin"),
        ("POST", "/v1/admin/orphans/remove", "admin"),
        ("POST", "/v1/admin/orphans/remove/", "admin"),
        ("GET", "/v1/admin/orphans", "reader"),
        ("POST", "/v1/admin/signing/rotate", "admin"),
        ("POST", "/health/live", None),
    ],
)
def test_required_role_per_route(method: str, path: str, role: str | None) -> None:
    assert required_role(method, path) == role


def test_sent_token_headers() -> None:
    assert sent_token([(b"authorization", b"Bearer abc")]) == "abc"
    assert sent_token([(b"authorization", b"bearer  abc ")]) == "abc"
    assert sent_token([(b"x-api-key", b"xyz")]) == "xyz"
    assert sent_token([(b"authorization", b"Basic dTpw")]) is None
    assert sent_token([(b"authorization", b"Bearer ")]) is None
    assert sent_token([(b"host", b"a")]) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (b"apk_secret", "sent without the 'Bearer' scheme"),
        (b"basic apk_secret", "uses the 'Basic' scheme, not 'Bearer'"),
        (b"apk_secret apk_secret", "uses a scheme other than 'Bearer'"),
        (b"Bearer ", "has the 'Bearer' scheme but no token"),
        (b"", "is empty"),
    ],
)
def test_authorization_problem_hides_token(value: bytes, problem: str) -> None:
    found = authorization_problem([(b"authorization", value)])
    assert found is not None
    assert problem in found
    assert "apk_secret" not in found


def test_authorization_problem_none_without_header() -> None:
    assert authorization_problem([(b"x-api-key", b"")]) is None
    assert authorization_problem([]) is None


def test_exposure_check_by_host(tmp_path: Path) -> None:
    source = tmp_path / "config.toml"
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        check_exposure(host, False, source)
    for host in ("0.0.0.0", "::", "192.0.2.1"):
        with pytest.raises(ConfigError, match="require_keys is false"):
            check_exposure(host, False, source)
        check_exposure(host, True, source)


def test_security_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[security]\nrequire_keys = true\nrefused_audit_seconds = 5\n")
    config = load_config(path)
    assert config.security.require_keys is True
    assert config.security.refused_audit_seconds == 5.0
    path.write_text("[security]\nrequire_keys = 1\n")
    with pytest.raises(ConfigError, match="'security.require_keys'"):
        load_config(path)
    path.write_text("[security]\nrefused_audit_seconds = 0\n")
    with pytest.raises(ConfigError, match="refused_audit_seconds must be above 0"):
        load_config(path)


def test_api_key_read_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    monkeypatch.delenv("APPLIANCE_API_KEY", raising=False)
    assert load_config(path).api_key is None
    monkeypatch.setenv("APPLIANCE_API_KEY", "apk_secret")
    config = load_config(path)
    assert config.api_key == "apk_secret"
    assert "apk_secret" not in repr(config)
