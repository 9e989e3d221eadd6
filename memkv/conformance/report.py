"""Reports of a conformance run: results.json, junit.xml and a readable report.html."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

_COLOURS = {"pass": "#1a7f37", "fail": "#cf222e", "error": "#8250df", "skip": "#6e7781"}


def write_reports(doc: dict[str, Any], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n",
                                            encoding="utf-8")
    (directory / "junit.xml").write_bytes(junit_xml(doc))
    (directory / "report.html").write_text(html_report(doc), encoding="utf-8")


def junit_xml(doc: dict[str, Any]) -> bytes:
    """One testcase per check, named with the requirement IDs it cites; one testsuite per profile."""
    root = ET.Element("testsuites", name="memkv-conformance", tests=str(len(doc["tests"])))
    by_profile: dict[str, list[dict[str, Any]]] = {}
    for test in doc["tests"]:
        by_profile.setdefault(test["profile"], []).append(test)
    for profile, tests in sorted(by_profile.items()):
        suite = ET.SubElement(root, "testsuite", name=f"memkv-conformance.{profile}", tests=str(len(tests)),
                              failures=str(sum(t["status"] == "fail" for t in tests)),
                              errors=str(sum(t["status"] == "error" for t in tests)),
                              skipped=str(sum(t["status"] == "skip" for t in tests)))
        for test in tests:
            ids = " ".join(test["requirements"])
            case = ET.SubElement(suite, "testcase", classname=f"{profile}.{test['nodeid'].split('::')[0]}",
                                 name=f"[{ids}] {test['name']}", time=f"{test['duration_s']:.3f}")
            props = ET.SubElement(case, "properties")
            for req_id in test["requirements"]:
                ET.SubElement(props, "property", name="requirement", value=req_id)
            text = "\n\n".join(f"[{f['requirement']}] {f['message']}\nexpected: {f['expected']}\nactual: "
                               f"{f['actual']}\nreproduction:\n{f['reproduction']}" for f in test["failures"])
            if test["status"] == "fail":
                ET.SubElement(case, "failure", message=test["message"][:500]).text = text
            elif test["status"] == "error":
                ET.SubElement(case, "error", message=test["message"][:500]).text = text or test.get("longrepr", "")
            elif test["status"] == "skip":
                ET.SubElement(case, "skipped", message=test["message"][:500])
    ET.indent(root)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _badge(status: str) -> str:
    colour = _COLOURS.get(status, "#6e7781")
    return f'<span class="badge" style="background:{colour}">{html.escape(status.upper())}</span>'


def html_report(doc: dict[str, Any]) -> str:
    e = html.escape
    target = doc["target"]
    verdict = doc["verdict"]
    good = verdict in ("CERTIFIED", "PASSED")
    parts = [f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>memkv conformance: {e(verdict)}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#1f2328}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #d0d7de;padding:4px 8px;text-align:left;
vertical-align:top}}th{{background:#f6f8fa}}.badge{{color:#fff;border-radius:4px;padding:1px 6px;font-size:.85em}}
pre{{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:.85em}}.verdict{{font-size:1.6em;font-weight:bold;
color:{'#1a7f37' if good else '#cf222e'}}}.failure{{border-left:4px solid #cf222e;padding-left:1em;margin:1.5em 0}}
</style></head><body>
<h1>memkv conformance report</h1>
<p class="verdict">{e(verdict)}</p>
<table><tr><th>target</th><td>{e(str(target.get('spec', '')))} ({e(str(target.get('kind', '')))})</td></tr>
<tr><th>backend</th><td>{e(str(target.get('capabilities', {}).get('backend', '?')))}</td></tr>
<tr><th>claimed profiles</th><td>{e(', '.join(doc['claimed_profiles']))}</td></tr>
<tr><th>profiles run</th><td>{e(', '.join(doc['selected_profiles']))}</td></tr>
<tr><th>suite / spec</th><td>{e(doc['suite']['version'])} / spec {e(doc['spec_version'])}; checked against spec
{e(doc['checked_against'])} (the target declares {e(doc['declared_spec_version'])})</td></tr>
<tr><th>mode</th><td>{'certification' if doc['certify'] else 'exploratory'}; seed {doc['seed']};
examples {doc['examples']}; steps {doc['steps']}</td></tr>
<tr><th>checks</th><td>{', '.join(f"{n} {s}" for s, n in doc['totals'].items())} in {doc['duration_s']} s</td></tr>
<tr><th>environment</th><td>{e(', '.join(f'{k} {v}' for k, v in doc['environment'].items()))}</td></tr>
</table>
<h2>Profiles</h2><table><tr><th>profile</th><th>claimed</th><th>status</th><th>MUSTs</th><th>pass</th><th>fail</th>
<th>error</th><th>not run</th><th>excluded</th><th>newer than declared</th></tr>"""]
    for name, p in doc["profiles"].items():
        if not p["requirements"]:
            continue
        status = p["status"] if p["selected"] else "skip"
        parts.append(f"<tr><td>{e(name)}</td><td>{'yes' if p['claimed'] else 'no'}</td><td>{_badge(status)}</td>"
                     f"<td>{p['requirements']}</td><td>{p['pass']}</td><td>{p['fail']}</td><td>{p['error']}</td>"
                     f"<td>{p['skip']}</td><td>{p['excluded']}</td><td>{p['not_applicable']}</td></tr>")
    parts.append("</table>")
    failures = [(r, f) for r in doc["requirements"].values() for f in r["failures"]]
    if failures:
        parts.append(f"<h2>Failures ({len(failures)})</h2>")
        seen: set[tuple[str, str]] = set()
        for req, failure in failures:
            marker = (req["id"], failure["test"])
            if marker in seen:
                continue
            seen.add(marker)
            claim = "claimed profile" if req["claimed"] else "profile not claimed: informational"
            parts.append(f"""<div class="failure" id="{e(req['id'])}"><h3>{_badge(req['status'])} {e(req['id'])}
({e(req['level'])}, {e(req['profile'])}; {claim})</h3>
<p><em>{e(req['summary'])}</em></p>
<p><b>check</b>: <code>{e(failure['test'])}</code><br><b>what</b>: {e(failure['message'])}</p>
<table><tr><th>expected</th><td><code>{e(failure['expected'])}</code></td></tr>
<tr><th>actual</th><td><code>{e(failure['actual'])}</code></td></tr></table>
<p><b>minimal reproduction</b></p><pre>{e(failure['reproduction'])}</pre></div>""")
    parts.append("<h2>Requirements</h2><table><tr><th>ID</th><th>level</th><th>profile</th><th>status</th>"
                 "<th>requirement</th><th>checked by</th></tr>")
    for req in doc["requirements"].values():
        if not req["applicable"]:
            status = '<span class="badge" style="background:#6e7781">NOT APPLICABLE</span>'
            by = e(f"added in spec {req['since']}; the target declares {doc['declared_spec_version']}")
        elif req["excluded"] and not req["tests"]:
            status = '<span class="badge" style="background:#9a6700">EXCLUDED</span>'
            by = e(f"{req['excluded']['reason']} Checked by: {req['excluded']['checked_by']}")
        else:
            status = _badge(req["status"])
            by = "<br>".join(e(t.split("::")[-1]) for t in dict.fromkeys(req["tests"])) or "(not run)"
        parts.append(f"<tr><td><a href='#{e(req['id'])}'>{e(req['id'])}</a></td><td>{e(req['level'])}</td>"
                     f"<td>{e(req['profile'])}</td><td>{status}</td><td>{e(req['summary'])}</td><td>{by}</td></tr>")
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


__all__ = ["html_report", "junit_xml", "write_reports"]
