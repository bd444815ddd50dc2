"""Git context: remote URL normalization, `.git` reading, CI variables, and end to end."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from otlp_receiver import OTLPReceiver
from sdk_helpers import run_traced

from traceroot import _git as git
from traceroot._git import GitContext, detect, normalize_remote

SHA = "b8fd2aa7c25ae5321f29913129386cb1f00a44f3"
SHA2 = "0123456789abcdef0123456789abcdef01234567"

# CI variables the detection reads; blanked so the machine running the tests does not leak in.
CI_BLANK = {name: "" for pair in git._CI_VARIABLES for name in pair} | {"VERCEL_GIT_REPO_OWNER": ""}


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://github.com/acme/agent.git", "acme/agent"),
        ("https://github.com/acme/agent", "acme/agent"),
        ("https://github.com/acme/agent/", "acme/agent"),
        ("http://github.com/acme/agent.git", "acme/agent"),
        ("https://x-access-token:s3cret@github.com/acme/agent.git", "acme/agent"),
        ("git@github.com:acme/agent.git", "acme/agent"),
        ("github.com:acme/agent.git", "acme/agent"),
        ("ssh://git@github.com/acme/agent.git", "acme/agent"),
        ("ssh://git@github.com:22/acme/agent.git", "acme/agent"),
        ("https://gitlab.com/group/sub/project.git", "group/sub/project"),
        ("git@gitlab.com:group/sub/project.git", "group/sub/project"),
        ("git@gitlab.example.com:team/svc.git", "team/svc"),
        ("ssh://git@bitbucket.org:7999/team/repo.git", "team/repo"),
        ("https://bitbucket.org/team/repo.git", "team/repo"),
        ("https://git.example.com:8443/team/repo.git", "team/repo"),
        ("git@codeberg.org:owner/repo.git", "owner/repo"),
        ("acme/agent", "acme/agent"),
        ("  https://github.com/acme/agent.git\n", "acme/agent"),
    ],
)
def test_remote_url_normalization(url: str, expected: str) -> None:
    assert normalize_remote(url) == expected


@pytest.mark.parametrize("url", ["", "   ", "https://github.com", "https://github.com/acme", "x"])
def test_unusable_remote_urls(url: str) -> None:
    assert normalize_remote(url) is None


def _fake_repo(root: Path, remote: str = "git@github.com:acme/agent.git", packed: bool = False):
    """A `.git` directory written by hand: a remote, HEAD on main, the branch's commit."""
    dot = root / ".git"
    (dot / "refs" / "heads").mkdir(parents=True)
    (dot / "config").write_text(
        "[core]\n\trepositoryformatversion = 0\n"
        '[remote "upstream"]\n\turl = https://github.com/other/fork.git\n'
        f'[remote "origin"]\n\turl = {remote}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
        '[branch "main"]\n\tremote = origin\n'
    )
    (dot / "HEAD").write_text("ref: refs/heads/main\n")
    if packed:
        (dot / "packed-refs").write_text(
            f"# pack-refs with: peeled fully-peeled sorted\n{SHA2} refs/heads/other\n"
            f"{SHA} refs/heads/main\n"
        )
    else:
        (dot / "refs" / "heads" / "main").write_text(SHA + "\n")
    return dot


def test_git_dir_read_from_a_parent_directory(tmp_path: Path) -> None:
    _fake_repo(tmp_path)
    deep = tmp_path / "src" / "agent" / "pkg"
    deep.mkdir(parents=True)
    assert detect(environ={}, cwd=str(deep)) == GitContext("acme/agent", SHA, tmp_path)


def test_packed_refs_and_detached_head(tmp_path: Path) -> None:
    dot = _fake_repo(tmp_path, remote="https://gitlab.com/g/s/p.git", packed=True)
    assert detect(environ={}, cwd=str(tmp_path)) == GitContext("g/s/p", SHA, tmp_path)
    (dot / "HEAD").write_text(SHA2 + "\n")
    assert detect(environ={}, cwd=str(tmp_path)).ref == SHA2


def test_worktree_style_git_file(tmp_path: Path) -> None:
    main = tmp_path / "main"
    main.mkdir()
    dot = _fake_repo(main)
    wt_dir = dot / "worktrees" / "feature"
    wt_dir.mkdir(parents=True)
    (wt_dir / "HEAD").write_text("ref: refs/heads/feature\n")
    (wt_dir / "commondir").write_text("../..\n")
    (dot / "refs" / "heads" / "feature").write_text(SHA2 + "\n")
    worktree = tmp_path / "feature-checkout"
    (worktree / "sub").mkdir(parents=True)
    (worktree / ".git").write_text(f"gitdir: {wt_dir}\n")
    ctx = detect(environ={}, cwd=str(worktree / "sub"))
    assert ctx == GitContext("acme/agent", SHA2, worktree)

    # A relative gitdir path, as submodules write it.
    rel = tmp_path / "rel"
    rel.mkdir()
    (rel / ".git").write_text("gitdir: ../main/.git\n")
    assert detect(environ={}, cwd=str(rel)) == GitContext("acme/agent", SHA, rel)


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({"GITHUB_REPOSITORY": "acme/agent", "GITHUB_SHA": SHA}, ("acme/agent", SHA)),
        ({"CI_PROJECT_PATH": "grp/sub/proj", "CI_COMMIT_SHA": SHA}, ("grp/sub/proj", SHA)),
        (
            {"CIRCLE_REPOSITORY_URL": "git@github.com:acme/agent.git", "CIRCLE_SHA1": SHA},
            ("acme/agent", SHA),
        ),
        (
            {"BUILDKITE_REPO": "https://github.com/acme/agent.git", "BUILDKITE_COMMIT": SHA},
            ("acme/agent", SHA),
        ),
        (
            {"BITBUCKET_REPO_FULL_NAME": "team/repo", "BITBUCKET_COMMIT": SHA},
            ("team/repo", SHA),
        ),
        (
            {
                "VERCEL_GIT_REPO_SLUG": "agent",
                "VERCEL_GIT_REPO_OWNER": "acme",
                "VERCEL_GIT_COMMIT_SHA": SHA,
            },
            ("acme/agent", SHA),
        ),
    ],
)
def test_ci_variables(tmp_path: Path, environ: dict[str, str], expected) -> None:
    ctx = detect(environ=environ, cwd=str(tmp_path))
    assert (ctx.repo, ctx.ref) == expected


def test_ci_variables_win_over_the_git_dir_and_explicit_args_win_over_both(
    tmp_path: Path,
) -> None:
    _fake_repo(tmp_path)
    ci = {"GITHUB_REPOSITORY": "ci/repo", "GITHUB_SHA": SHA2}
    assert detect(environ=ci, cwd=str(tmp_path)) == GitContext("ci/repo", SHA2, tmp_path)
    explicit = detect("https://github.com/mine/repo.git", "v1.2.3", environ=ci, cwd=str(tmp_path))
    assert explicit == GitContext("mine/repo", "v1.2.3", tmp_path)
    # Only one given: the other is still found.
    assert detect("mine/repo", None, environ={}, cwd=str(tmp_path)).ref == SHA
    assert detect(None, "v9", environ={}, cwd=str(tmp_path)).repo == "acme/agent"


def test_outside_any_repository_and_broken_repositories(tmp_path: Path) -> None:
    assert detect(environ={}, cwd=str(tmp_path)) == GitContext(None, None, None)
    broken = tmp_path / "broken"
    (broken / ".git").mkdir(parents=True)  # no HEAD, no config
    ctx = detect(environ={}, cwd=str(broken))
    assert (ctx.repo, ctx.root) == (None, broken)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / ".git").write_bytes(b"\xff\xfe not a gitdir line")
    assert detect(environ={}, cwd=str(garbage)).repo is None
    # A cwd that does not exist any more.
    assert detect(environ={}, cwd=str(tmp_path / "gone")).repo is None


APP = r"""
import traceroot
traceroot.initialize()

@traceroot.observe
def work():
    return 1

work()  # @call
"""

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


@needs_git
def test_real_repository_end_to_end(
    tmp_path: Path, run_python, receiver: OTLPReceiver, traceroot_env
) -> None:
    repo = tmp_path / "repo"
    app = repo / "src" / "agent" / "app.py"
    app.parent.mkdir(parents=True)
    app.write_text(APP)

    def run_git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, check=True, capture_output=True, text=True
        ).stdout.strip()

    run_git("init", "-q", "-b", "main")
    run_git("remote", "add", "origin", "git@gitlab.example.com:acme/agent.git")
    run_git("add", ".")
    run_git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "init")
    head = run_git("rev-parse", "HEAD")

    env = {**traceroot_env, **CI_BLANK}
    # Run from a subdirectory: the repository is found by walking up.
    proc = run_python(args=[str(app)], env=env, cwd=repo / "src")
    assert proc.returncode == 0, proc.stderr
    span = receiver.wait_for_spans(1, timeout=5)[0]
    assert span.attributes["traceroot.git.repo"] == "acme/agent"
    assert span.attributes["traceroot.git.ref"] == head
    assert span.attributes["traceroot.git.source_file"] == "src/agent/app.py"
    assert span.attributes["traceroot.git.source_line"] == 9

    # TRACEROOT_GIT_REPO / TRACEROOT_GIT_REF win over what the repository says.
    receiver.clear()
    env |= {"TRACEROOT_GIT_REPO": "https://github.com/override/name", "TRACEROOT_GIT_REF": "v2"}
    proc = run_python(args=[str(app)], env=env, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    span = receiver.wait_for_spans(1, timeout=5)[0]
    assert span.attributes["traceroot.git.repo"] == "override/name"
    assert span.attributes["traceroot.git.ref"] == "v2"


def test_outside_a_repository_end_to_end(run_python, receiver: OTLPReceiver, traceroot_env) -> None:
    env = {**traceroot_env, **CI_BLANK, "GITHUB_REPOSITORY": "ci/from-env", "GITHUB_SHA": SHA}
    _, spans = run_traced(run_python, receiver, env, APP, expect=1)
    attrs = spans.one("work").attributes
    assert attrs["traceroot.git.repo"] == "ci/from-env"  # the CI variables alone
    assert attrs["traceroot.git.ref"] == SHA
    assert attrs["traceroot.git.source_file"] == "script.py"

    receiver.clear()
    proc, spans = run_traced(run_python, receiver, {**traceroot_env, **CI_BLANK}, APP, expect=1)
    attrs = spans.one("work").attributes
    assert "traceroot.git.repo" not in attrs and "traceroot.git.ref" not in attrs
    assert attrs["traceroot.git.source_file"] == "script.py"
    assert "Traceback" not in proc.stderr
