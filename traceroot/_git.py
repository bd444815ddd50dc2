"""Which repository and commit the running code comes from.

Sources, first found wins: explicit arguments, `TRACEROOT_GIT_REPO`/`TRACEROOT_GIT_REF`
(resolved by the config), CI variables, the `.git` directory read as files (found
by walking up from the working directory), then the `git` command. Never raises.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("traceroot")

# (repository variable, commit variable); a repository value may be a URL or owner/repo.
_CI_VARIABLES: tuple[tuple[str, str], ...] = (
    ("GITHUB_REPOSITORY", "GITHUB_SHA"),  # GitHub Actions
    ("CI_PROJECT_PATH", "CI_COMMIT_SHA"),  # GitLab CI
    ("BUILDKITE_REPO", "BUILDKITE_COMMIT"),  # Buildkite
    ("BITBUCKET_REPO_FULL_NAME", "BITBUCKET_COMMIT"),  # Bitbucket Pipelines
    ("TRAVIS_REPO_SLUG", "TRAVIS_COMMIT"),  # Travis CI
    ("BUILD_REPOSITORY_URI", "BUILD_SOURCEVERSION"),  # Azure Pipelines
    ("CIRCLE_REPOSITORY_URL", "CIRCLE_SHA1"),  # CircleCI
    ("VERCEL_GIT_REPO_SLUG", "VERCEL_GIT_COMMIT_SHA"),  # Vercel (slug joined with owner below)
)

_SCP_LIKE = re.compile(r"^(?:[\w.-]+@)?[\w.-]+:(?!//)(?P<path>.+)$")


@dataclass(frozen=True)
class GitContext:
    """Repository as `owner/repo`, commit ref, and the work-tree root (for relative paths)."""

    repo: str | None = None
    ref: str | None = None
    root: Path | None = None


def normalize_remote(url: str) -> str | None:
    """`owner/repo` from an https, ssh or scp-like remote URL of any host."""
    url = url.strip()
    if not url:
        return None
    if "://" in url:
        path = url.split("://", 1)[1]
        path = path.split("/", 1)[1] if "/" in path else ""
    elif (match := _SCP_LIKE.match(url)) is not None:
        path = match.group("path")
    else:
        path = url  # already owner/repo
    path = path.split("?", 1)[0].strip("/")
    path = path.removesuffix(".git").strip("/")
    if path.count("/") < 1:
        return None
    return path


def detect(
    repo: str | None = None,
    ref: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> GitContext:
    """Fill in whatever of repo/ref is not given; also find the work-tree root."""
    try:
        return _detect(repo, ref, os.environ if environ is None else environ, cwd or os.getcwd())
    except Exception as exc:  # git context is a nicety; it must never cost the program
        logger.debug("traceroot: git context detection failed: %r", exc)
        return GitContext(repo=repo, ref=ref)


def _detect(repo: str | None, ref: str | None, environ: Mapping[str, str], cwd: str) -> GitContext:
    if repo is not None:
        repo = normalize_remote(repo) or repo
    for repo_var, ref_var in _CI_VARIABLES:
        if not environ.get(repo_var):
            continue  # not this CI
        value = environ[repo_var]
        if repo_var == "VERCEL_GIT_REPO_SLUG" and environ.get("VERCEL_GIT_REPO_OWNER"):
            value = f"{environ['VERCEL_GIT_REPO_OWNER']}/{value}"
        repo = repo or normalize_remote(value)
        ref = ref or environ.get(ref_var, "").strip() or None
        break

    root, git_dir = _find_git_dir(Path(cwd))
    if git_dir is not None and (repo is None or ref is None):
        file_repo, file_ref = _read_git_dir(git_dir)
        repo = repo or file_repo
        ref = ref or file_ref
    if root is not None and (repo is None or ref is None) and shutil.which("git"):
        cmd_repo, cmd_ref = _ask_git(root)
        repo = repo or cmd_repo
        ref = ref or cmd_ref
    return GitContext(repo=repo, ref=ref, root=root)


def _find_git_dir(start: Path) -> tuple[Path | None, Path | None]:
    for directory in (start, *start.parents):
        candidate = directory / ".git"
        if candidate.is_dir():
            return directory, candidate
        if candidate.is_file():  # worktrees and submodules: "gitdir: <path>"
            text = candidate.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:") :].strip())
                return directory, (target if target.is_absolute() else directory / target)
    return None, None


def _read_git_dir(git_dir: Path) -> tuple[str | None, str | None]:
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text(encoding="utf-8").strip()).resolve()
    return _remote_from_config(common / "config"), _head_commit(git_dir, common)


def _remote_from_config(config_path: Path) -> str | None:
    if not config_path.is_file():
        return None
    parser = configparser.RawConfigParser(strict=False)
    parser.read(config_path, encoding="utf-8")
    remotes = [s for s in parser.sections() if s.startswith('remote "')]
    remotes.sort(key=lambda s: s != 'remote "origin"')  # origin first, then in file order
    for section in remotes:
        url = parser.get(section, "url", fallback=None)
        if url and (normalized := normalize_remote(url)):
            return normalized
    return None


def _head_commit(git_dir: Path, common: Path) -> str | None:
    head_file = git_dir / "HEAD"
    if not head_file.is_file():
        return None
    head = head_file.read_text(encoding="utf-8").strip()
    if not head.startswith("ref:"):
        return head or None
    ref_name = head[len("ref:") :].strip()
    for base in (git_dir, common):
        loose = base / ref_name
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            sha, _, name = line.partition(" ")
            if name.strip() == ref_name:
                return sha
    return None  # a branch with no commits yet


def _ask_git(root: Path) -> tuple[str | None, str | None]:
    import subprocess  # only here: most programs never need to ask git, and start faster

    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=2, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() or None if done.returncode == 0 else None

    url = run("config", "--get", "remote.origin.url")
    return (normalize_remote(url) if url else None), run("rev-parse", "HEAD")
