"""The docs stay true: links resolve, every page is reachable from the README, the README stays a
front door, the commands it tells a newcomer to run still exist, and its monitoring section shows
the scrape job, the metrics and the alerts there are.

No cluster and no network: links are checked against the work tree, `make` targets against the
Makefile, paths against the repository, `readiness` commands against the click app itself, the
scrape job against the testbed's, the metrics against a fresh registry and the alerts against
deploy/monitoring/prometheusrule.yaml.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.metrics import MetricWrapperBase
from tests.support.paths import ROOT

from readiness.cli import main as readiness_cli
from readiness.observe.metrics import Metrics
from readiness_testbed.observers import pod_scrape_config, prometheus_config

README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LIMIT = 12 * 1024  # bytes: past this the README is no longer a front door

FENCE = re.compile(r"^ {0,3}(```+|~~~+)\s*([\w+-]*)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(].*?[\"')])?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
CODE_SPAN = re.compile(r"(`+).+?\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
SHELL_LANGUAGES = {"sh", "shell", "bash", "zsh", "console"}


def pages() -> list[Path]:
    """Every page whose links are checked."""
    # testbed/README.md links into docs/ too: a page renamed there breaks it.
    return [README, ROOT / "CONTRIBUTING.md", *sorted(DOCS.glob("*.md")), ROOT / "testbed" / "README.md"]


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines outside fenced code blocks, numbered from 1."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            fence = None
        elif fence is None:
            yield number, line


def fenced_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, line of the opening fence, lines) of each fenced code block."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        marker, language, start = match.group(1), match.group(2).lower(), index + 1
        body: list[str] = []
        index += 1
        while index < len(lines) and not (
            lines[index].strip().startswith(marker) and not lines[index].strip().strip(marker[0])
        ):
            body.append(lines[index])
            index += 1
        index += 1
        yield language, start, body


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text, lowercased, punctuation dropped but for hyphens
    and spaces, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML goes
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors a page offers: one per heading (a repeated one gets -1, -2, ...) and any
    explicit <a name>/<a id>."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


@dataclass(frozen=True)
class Link:
    page: Path
    line: int
    target: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: ({self.target})"


def links(page: Path, text: str | None = None) -> Iterator[Link]:
    """Relative links and images of a page (its ``text``, by default read from the file),
    outside code; absolute URLs are left out."""
    if text is None:
        text = page.read_text(encoding="utf-8")
    for number, line in prose_lines(text):
        text = CODE_SPAN.sub("", line)
        targets = INLINE_LINK.findall(text)
        reference = REFERENCE_LINK.match(text)
        if reference:
            targets.append(reference.group(1))
        for target in targets:
            if SCHEME.match(target) or target.startswith("//"):
                continue
            yield Link(page, number, target)


def broken(link: Link) -> str | None:
    """Why a link leads nowhere, or None."""
    path_part, _, fragment = link.target.partition("#")
    path_part = path_part.split("?", 1)[0]
    target = (link.page.parent / path_part).resolve() if path_part else link.page
    if path_part.startswith("/"):
        return "an absolute path: write it relative to the page"
    if not target.is_relative_to(ROOT):
        return "leads outside the repository"
    if not target.exists():
        return f"{target.relative_to(ROOT)} does not exist"
    if fragment:
        if target.is_dir() or target.suffix.lower() != ".md":
            return f"an anchor on {target.relative_to(ROOT)}, which is not a Markdown page"
        if fragment not in anchors(target):
            return f"no heading of {target.relative_to(ROOT)} makes #{fragment}"
    return None


def broken_links(checked: list[Path]) -> list[str]:
    return [f"{link}: {why}" for page in checked for link in links(page) if (why := broken(link))]


# ---- 1. links ----


def test_every_relative_link_and_anchor_resolves() -> None:
    assert list(DOCS.glob("*.md")), "docs/ holds the pages the README links to"
    assert broken_links(pages()) == []


# ---- 2. the README reaches every page ----


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {
        (README.parent / link.target.partition("#")[0]).resolve()
        for link in links(README)
        if link.target.partition("#")[0]
    }
    assert [
        p.relative_to(ROOT).as_posix() for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked
    ] == []


def test_every_docs_page_says_what_it_covers_and_links_back() -> None:
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        first = text.splitlines()[0] if text else ""
        assert first.startswith("# "), f"{page.name}: starts with its title"
        assert any(link.target == "../README.md" for link in links(page)), f"{page.name}: links back"


# ---- 3. the README stays small ----


def test_the_readme_is_a_front_door() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes (limit {README_LIMIT}): move detail to docs/"


# ---- 4. the README's commands still work ----


def make_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_./%-]+(?:\s+[A-Za-z0-9_./%-]+)*)\s*:(?!=)", line)
        if match and not line.startswith(("\t", " ", "#")):
            targets.update(match.group(1).split())
    return targets


def shell_commands(text: str) -> Iterator[tuple[int, list[str]]]:
    """Each simple command of the page's shell blocks, as words: continuation lines joined,
    comments, redirections and their targets dropped, pipelines and lists split. In a console
    block only the `$ ` lines are commands."""
    for language, start, body in fenced_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        joined: list[tuple[int, str]] = []
        pending, first = "", 0
        for offset, raw in enumerate(body, 1):
            line = raw
            if language == "console":
                if pending == "" and not line.startswith("$ "):
                    continue
                line = line.removeprefix("$ ")
            first = first or start + offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            joined.append((first, pending + line))
            pending, first = "", 0
        for number, line in joined:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            tokens = list(lexer)
            skip = False
            for token in tokens:
                if skip:
                    skip = False
                    continue
                if token in ("|", "||", "&&", ";", "&"):
                    if words:
                        yield number, words
                    words = []
                elif token in (">", ">>", "<", "2>", ">&", "&>"):
                    skip = True
                elif token in ("(", ")"):
                    raise AssertionError(f"line {number}: subshells are not checked: {line!r}")
                else:
                    words.append(token)
            if words:
                yield number, words


ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def check_make(words: list[str]) -> list[str]:
    targets = [w for w in words[1:] if not w.startswith("-") and not ASSIGNMENT.match(w)]
    if not targets:
        return ["make with no target: name the one meant"]
    known = make_targets()
    return [f"make {t}: no such target in the Makefile" for t in targets if t not in known]


def option_values(words: list[str], *names: str) -> list[str]:
    """The values of `-x v`, `--xx v` and `--xx=v` among ``words``."""
    values: list[str] = []
    for index, word in enumerate(words):
        for name in names:
            if word == name and index + 1 < len(words):
                values.append(words[index + 1])
            elif name.startswith("--") and word.startswith(name + "="):
                values.append(word.split("=", 1)[1])
    return values


def exists(path: str) -> bool:
    return path == "-" or bool(SCHEME.match(path)) or (ROOT / path).exists()


def check_kubectl(words: list[str]) -> list[str]:
    paths = option_values(words, "-f", "--filename", "-k", "--kustomize")
    return [f"kubectl ... {p}: no such path in the repository" for p in paths if not exists(p)]


HELM_FLAGS_WITH_VALUES = {
    "-n", "--namespace", "--set", "--set-string", "--set-file", "--set-json", "-f", "--values",
    "--version", "--timeout", "--repo", "--kube-context", "--kubeconfig", "-o", "--output",
}  # fmt: skip


def check_helm(words: list[str]) -> list[str]:
    if len(words) < 2 or words[1] not in ("install", "upgrade", "template", "lint", "uninstall", "status"):
        return [f"helm {' '.join(words[1:2])}: a helm command this test does not know; teach it"]
    positional: list[str] = []
    rest = iter(words[2:])
    for word in rest:
        if word in HELM_FLAGS_WITH_VALUES:
            next(rest, None)
        elif not word.startswith("-"):
            positional.append(word)
    problems = [f"helm -f {v}: no such file" for v in option_values(words, "-f", "--values") if not exists(v)]
    if words[1] in ("install", "upgrade"):
        if len(positional) != 2:
            return [*problems, f"helm {words[1]} takes a release name and a chart: {positional}"]
        chart = positional[1]
        if "/" in chart and not chart.startswith((".", "charts/")):
            return problems  # a repository's chart (repo/name): nothing of ours to check
        if not (ROOT / chart / "Chart.yaml").is_file():
            problems.append(f"helm {words[1]} ... {chart}: no chart there")
    return problems


def check_readiness(words: list[str]) -> list[str]:
    args = words[1:]
    if not args:
        return ["readiness with no subcommand"]
    name = args[0]
    command = readiness_cli.commands.get(name)
    if command is None:
        return [f"readiness {name}: no such subcommand (have {sorted(readiness_cli.commands)})"]
    result = CliRunner().invoke(readiness_cli, [name, "--help"])
    if result.exit_code != 0:
        return [f"readiness {name} --help exits {result.exit_code}: {result.output}"]
    try:  # the words as the command would parse them, without running it
        context = command.make_context(name, list(args[1:]))
    except click.ClickException as error:
        return [f"readiness {' '.join(args)}: {error.format_message()}"]
    paths = context.params.get("paths") or ()
    return [f"readiness {name} {p}: no such path in the repository" for p in paths if not exists(p)]


def check_export(words: list[str]) -> list[str]:
    return [f"export {w}: not NAME=value" for w in words[1:] if not ASSIGNMENT.match(w)]


CHECKS = {
    "make": check_make,
    "kubectl": check_kubectl,
    "helm": check_helm,
    "readiness": check_readiness,
    ".venv/bin/readiness": check_readiness,
    "export": check_export,
}


def command_problems(text: str) -> list[str]:
    """What no longer works among the shell commands of ``text``; a command of a kind this test
    does not know is a problem too, so a new kind gets a check before it can rot."""
    problems: list[str] = []
    for number, line_words in shell_commands(text):
        words = line_words
        while words and ASSIGNMENT.match(words[0]):  # VAR=value command ...
            words = words[1:]
        if not words:
            continue
        check = CHECKS.get(words[0])
        if check is None:
            problems.append(f"line {number}: {words[0]}: a command this test does not know; add a check")
            continue
        problems += [f"line {number}: {p}" for p in check(words)]
    return problems


def test_the_readmes_commands_still_work() -> None:
    text = README.read_text(encoding="utf-8")
    assert sum(1 for _ in shell_commands(text)) >= 4, "the README shows its commands in ```sh blocks"
    assert command_problems(text) == []


def test_the_readme_shows_the_two_commands() -> None:
    heads = [words[:2] for _, words in shell_commands(README.read_text(encoding="utf-8"))]
    assert ["make", "demo"] in heads
    assert ["make", "test"] in heads


# ---- 5. the README's monitoring section is what there is ----

RULES = ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"


def section(text: str, title: str) -> str:
    """The body of a page's ``## title`` section, up to the next heading of level 1 or 2."""
    lines = text.splitlines()
    heads = [(number, match) for number, line in prose_lines(text) if (match := HEADING.match(line))]
    start = next(number for number, match in heads if match.group(1) == "##" and match.group(2) == title)
    end = next(
        (number for number, match in heads if number > start and len(match.group(1)) <= 2), len(lines) + 1
    )
    return "\n".join(lines[start : end - 1])


def tables(text: str) -> dict[str, list[list[str]]]:
    """The Markdown tables of ``text`` outside code, by their first header cell: each row's cells,
    the header and the |---| line left out."""
    found: dict[str, list[list[str]]] = {}
    rows: list[list[str]] = []
    for _, line in [*prose_lines(text), (0, "")]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            found[rows[0][0]] = rows[2:]
            rows = []
    return found


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def monitoring() -> str:
    return section(README.read_text(encoding="utf-8"), "Monitoring")


def registered() -> dict[str, tuple[str, set[str]]]:
    """What readiness.observe.metrics registers, as Prometheus names it (counters with _total, an
    info with _info; a histogram by its base name): name -> (type, label names). The default
    process and platform collectors' families are left out: the README names them in prose."""
    defaults = CollectorRegistry()
    ProcessCollector(registry=defaults)
    PlatformCollector(registry=defaults)
    default_families = {family.name for family in defaults.collect()}
    metrics = Metrics(CollectorRegistry())
    for metric in vars(metrics).values():
        # Labelled metrics expose no sample, so no label names, until a child exists.
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:
            metric.labels(*["x"] * len(metric._labelnames))
    suffix = {"counter": "_total", "info": "_info"}
    return {
        family.name + suffix.get(family.type, ""): (
            family.type,
            {label for sample in family.samples for label in sample.labels} - {"le"},
        )
        for family in metrics.registry.collect()
        if family.name not in default_families
    }


def test_the_readmes_scrape_job_is_the_one_the_testbeds_prometheus_runs() -> None:
    blocks = [body for language, _, body in fenced_blocks(monitoring()) if language == "yaml"]
    assert len(blocks) == 1, "the Monitoring section shows one ```yaml block: the scrape job"
    shown = yaml.safe_load("\n".join(blocks[0]))
    assert list(shown) == ["scrape_configs"]
    assert shown["scrape_configs"] == [pod_scrape_config()]
    # ... and the testbed adds only its kubeconfig and a node selector, as the README says.
    (run,) = prometheus_config(Path("kubeconfig"), Path("rules.yaml"))["scrape_configs"]
    added = {"kubeconfig_file", "selectors"}
    assert {**run, "kubernetes_sd_configs": None} == {**pod_scrape_config(), "kubernetes_sd_configs": None}
    assert [{k: v for k, v in sd.items() if k not in added} for sd in run["kubernetes_sd_configs"]] == (
        pod_scrape_config()["kubernetes_sd_configs"]
    )


def test_the_readmes_metrics_table_is_what_the_operator_registers() -> None:
    text = monitoring()
    rows = tables(text).get("Metric")
    assert rows, "the Monitoring section has a | Metric | Type | Labels | Meaning | table"
    shown: dict[str, tuple[str, set[str]]] = {}
    for name, kind, labels, meaning in rows:
        (metric,) = code_spans(name)
        assert metric not in shown, f"{metric} twice"
        assert meaning, f"{metric}: say what it means"
        shown[metric] = (kind, set(code_spans(labels)))
    assert shown == registered()
    for default in ("`process_*`", "`python_info`"):
        assert default in text, f"the default collectors' {default} is named in prose"


def test_the_readmes_alert_table_is_the_prometheusrule() -> None:
    rows = tables(monitoring()).get("Alert")
    assert rows, "the Monitoring section has an | Alert | Severity | For | ... | table"
    shown: dict[str, tuple[str, str]] = {}
    for name, severity, duration, meaning in rows:
        (alert,) = code_spans(name)
        assert meaning, f"{alert}: say what it means and what to do"
        shown[alert] = (severity, duration)
    (rule,) = yaml.safe_load_all(RULES.read_text())
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert shown == {r["alert"]: (r["labels"]["severity"], r["for"]) for r in rules}


# ---- the checks themselves catch what they are for ----


def test_a_heading_anchor_is_githubs() -> None:
    assert slug("Admission: compliant from the first pod") == "admission-compliant-from-the-first-pod"
    assert slug("How the work is shaped (fleet scale)") == "how-the-work-is-shaped-fleet-scale"
    assert slug("NextChange: ride the team's next rollout") == "nextchange-ride-the-teams-next-rollout"
    assert slug("With `kubectl` and [Helm](x.md)") == "with-kubectl-and-helm"
    assert slug("snake_case stays — dashes-too") == "snake_case-stays--dashes-too"


def test_the_link_check_catches_a_missing_file_and_a_missing_anchor() -> None:
    page = DOCS / "profile-reference.md"
    for target, why in [
        ("nowhere.md", "does not exist"),
        ("../README.md#no-such-heading", "no heading of README.md makes #no-such-heading"),
        ("#not-on-this-page", "no heading of docs/profile-reference.md"),
        ("../../outside.md", "outside the repository"),
    ]:
        reason = broken(Link(page, 1, target))
        assert reason is not None, target
        assert why in reason, (target, reason)
    assert broken(Link(page, 1, "../README.md#two-commands")) is None
    assert broken(Link(page, 1, "../bench/results/fleet.png")) is None


def test_links_in_code_are_not_links() -> None:
    text = "`[a](nowhere.md)`\n\n```md\n[b](nowhere.md)\n```\n[c](there.md) ![d](../x.png 'title')\n[e]: ../y.md\n"
    assert [link.target for link in links(DOCS / "probe.md", text)] == ["there.md", "../x.png", "../y.md"]


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ("make nosuchtarget", "no such target"),
        ("kubectl apply --server-side -k deploy/nowhere/", "no such path"),
        ("kubectl apply --filename=examples/missing.yaml", "no such path"),
        ("kubectl delete -f deploy/rbac.yaml -f deploy/missing.yaml", "no such path"),
        ("helm install r charts/missing -n x", "no chart there"),
        ("helm install r charts/readiness-operator -f charts/missing.yaml", "no such file"),
        ("readiness nosuch", "no such subcommand"),
        ("readiness audit --no-such-flag examples/", "No such option"),
        ("readiness audit -o yaml examples/", "'yaml' is not one of"),
        ("readiness audit examples/missing/", "no such path"),
        ("curl -s https://example.com | sh", "a command this test does not know"),
        ("KUBECONFIG=x docker build .", "a command this test does not know"),
    ],
)
def test_the_command_check_catches_what_no_longer_works(block: str, problem: str) -> None:
    problems = command_problems(f"```sh\n{block}\n```\n")
    assert any(problem in p for p in problems), problems


def test_the_command_check_passes_what_works() -> None:
    text = (
        "```sh\nmake demo   # a comment\nmake test\n"
        "kubectl apply --server-side -k deploy/ && kubectl get sp -n shop\n"
        "helm install readiness-operator charts/readiness-operator -n readiness-system \\\n"
        "  --set image.tag=0.1.0\n"
        "kubectl get deploy -o yaml | readiness audit --require-profile -\n"
        "readiness audit -o sarif -n shop examples/ > readiness.sarif\n```\n"
        "```console\n$ export KUBECONFIG=.testbed/kubeconfig\nNAME  READY\n```\n"
    )
    assert command_problems(text) == []
    commands = list(shell_commands(text))
    assert [number for number, _ in commands] == [2, 3, 4, 4, 5, 7, 7, 8, 11]
    assert commands[4][1][-2:] == ["--set", "image.tag=0.1.0"]


def test_a_section_ends_at_the_next_heading_and_its_tables_are_read() -> None:
    text = (
        "# Page\n## A\nbefore\n## B\n```yaml\n# not a heading\n```\n"
        "| Metric | Type |\n|---|---|\n| `a_total` | counter |\n| `b` | gauge |\n\n"
        "| Alert | For |\n|---|---|\n| `X` | 5m |\n### C\nkept\n## D\nafter\n"
    )
    body = section(text, "B")
    assert body.startswith("```yaml")
    assert body.endswith("kept")
    assert "after" not in body
    assert tables(body) == {"Metric": [["`a_total`", "counter"], ["`b`", "gauge"]], "Alert": [["`X`", "5m"]]}
    assert code_spans("`namespace`, `profile`") == ["namespace", "profile"]
    assert code_spans("") == []
