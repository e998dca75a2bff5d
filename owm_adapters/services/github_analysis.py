"""Running repository analyses (``POST /v1/github/analyze``) with the GitHub App: fetch the
repository's archive through the GitHub port as the App's installation on it, measure it
(:mod:`owm_adapters.github.tree_analysis`), store the result with its score and reasons. A
repository is measured whole at ``HEAD`` and credited to its contributors; a pull request by
the files it changed (measured at its head commit, with the lines added and deleted) and
credited to its author and its commits' authors.

An analysis goes queued → running → done (the result) or failed (the reason, e.g. the App is
not installed on the repository). Analyses run one at a time on the runner's own thread, so a
request is answered at once (202) and the result is polled (SRS-PERF-06: minutes, not hours).
The installation is the one named by the latest stored webhook delivery of the repository.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from owm_adapters.github.tree_analysis import analyse_tarball
from owm_adapters.services.bounty_book import app_installation
from owm_core.errors import DomainError
from owm_core.governance.analysis import RepositoryAnalysis
from owm_core.governance.contributions import AnalysisRequest, AnalysisState, advance_analysis
from owm_core.ports.clock import Clock
from owm_core.ports.github import GitHub
from owm_core.ports.repositories import Repositories

log = logging.getLogger(__name__)



class AnalysisRunner:
    """Runs queued analyses (see the module docstring)."""

    def __init__(self, repositories: Repositories, clock: Clock, github: GitHub | None) -> None:
        self._repositories = repositories
        self._clock = clock
        self._github = github
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="github-analysis")

    def submit(self, analysis_id: str) -> Future[None]:
        """Run analysis ``analysis_id`` on the runner's thread."""
        return self._pool.submit(self.run, analysis_id)

    def installation_of(self, repository: str) -> int | None:
        """The App's installation on ``repository``, from its latest stored delivery."""
        return app_installation(self._repositories, repository)

    def run(self, analysis_id: str) -> None:
        """Analyse one queued request and store its outcome (done or failed, with why)."""
        request = self._repositories.analyses.get(analysis_id)
        if request is None or request.state is not AnalysisState.QUEUED:
            return
        running = advance_analysis(request, AnalysisState.RUNNING, self._clock.now())
        self._repositories.analyses.save(running)
        try:
            installation = self.installation_of(request.repository)
            if self._github is None or installation is None:
                raise DomainError(
                    f"the GitHub App is not installed on {request.repository} (no delivery "
                    "from it yet)"
                )
            result = self._measure(self._github, installation, request).to_json()
            state = AnalysisState.DONE
        except DomainError as exc:
            result, state = json.dumps({"error": exc.message}), AnalysisState.FAILED
            log.warning("analysis %s of %s failed: %s", analysis_id, request.repository,
                        exc.message)
        self._repositories.analyses.save(
            advance_analysis(running, state, self._clock.now(), result)
        )

    @staticmethod
    def _measure(github: GitHub, installation: int, request: AnalysisRequest) -> RepositoryAnalysis:
        """A pull request's changed files at its head, credited to its commits' authors; or
        the repository's whole tree at HEAD, credited to its contributors."""
        repository, number = request.repository, request.pull_request
        if number is None:
            archive = github.archive(installation, repository, "HEAD")
            return analyse_tarball(archive, github.contributors(installation, repository))
        pull = github.pull_request(installation, repository, number)
        changes = github.pull_changes(installation, repository, number)
        archive = github.archive(installation, repository, pull.head_sha)
        return analyse_tarball(archive, [pull.author, *changes.authors],
                               only=changes.measured_paths(), changes=changes.files)  # fmt: skip

    def stop(self) -> None:
        """Finish the analysis in progress and stop the thread."""
        self._pool.shutdown(wait=True)
