"""The run config of a commit: the request's (or the container's), `changes` on top, gaps filled from
the container's config as dockerd's merge does."""

from __future__ import annotations

from refengine.engine.containers.commit import merge

CONTAINER = {"User": "probe", "Env": ["A=1", "B=2"], "Cmd": ["sh"], "Entrypoint": None, "WorkingDir": "/w",
             "Labels": {"l": "c", "k": "c"}, "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/v": {}},
             "StopSignal": "SIGUSR1"}


def test_empty_user_config_takes_the_container_s() -> None:
    out = merge({}, CONTAINER)
    assert (out["User"], out["Env"], out["Cmd"], out["WorkingDir"], out["StopSignal"]) == (
        "probe", ["A=1", "B=2"], ["sh"], "/w", "SIGUSR1")
    assert out["Labels"] == {"l": "c", "k": "c"} and out["Volumes"] == {"/v": {}}


def test_user_values_win_and_collections_are_unions() -> None:
    out = merge({"Env": ["B=9", "C=3"], "Labels": {"k": "u"}, "ExposedPorts": {"443/tcp": {}}, "Cmd": ["x"],
                 "Volumes": {"/u": {}}}, CONTAINER)
    assert out["Env"] == ["B=9", "C=3", "A=1"]  # the container's B is shadowed by the user's
    assert out["Labels"] == {"l": "c", "k": "u"}
    assert out["ExposedPorts"] == {"80/tcp": {}, "443/tcp": {}} and out["Volumes"] == {"/u": {}, "/v": {}}
    assert out["Cmd"] == ["x"]


def test_an_entrypoint_keeps_its_own_cmd() -> None:
    out = merge({"Entrypoint": ["/bin/e"]}, CONTAINER)
    assert out["Entrypoint"] == ["/bin/e"] and out.get("Cmd") is None
