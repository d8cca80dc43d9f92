"""Scrapes a /metrics page with a real HTTP client and parses it with an
independent parser (prometheus_client's), for tests/metrics_examples.rs.

Usage: scrape_metrics.py HOST PORT PATH
       scrape_metrics.py --file PATH   (a page in a file; label values hex)

Prints tab-separated lines: STATUS <code> <content-type>, then for a 200 one
FAMILY <name> <type> <help> per family and SAMPLE <name> <k=v,...> <value>
per sample. With --file, label values and help texts are the hex of their
UTF-8, so that any character survives. Exits 3 when prometheus_client is
missing, 1 when the page does not parse.
"""
import http.client
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("MISSING prometheus_client (pip install prometheus_client)")
    sys.exit(3)

if sys.argv[1] == "--file":
    with open(sys.argv[2], encoding="utf-8") as f:
        status, content_type, body = 200, "file", f.read()
    enc = lambda s: s.encode("utf-8").hex()
else:
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    status, content_type = resp.status, resp.getheader("Content-Type", "")
    body = resp.read().decode("utf-8")
    enc = lambda s: s.replace("\t", " ").replace("\n", " ")
print(f"STATUS\t{status}\t{content_type}")
if status == 200:
    for family in text_string_to_metric_families(body):
        print(f"FAMILY\t{family.name}\t{family.type}\t{enc(family.documentation)}")
        for s in family.samples:
            labels = ",".join(f"{k}={enc(v)}" for k, v in sorted(s.labels.items()))
            print(f"SAMPLE\t{s.name}\t{labels}\t{s.value!r}")
