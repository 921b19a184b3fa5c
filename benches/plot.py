#!/usr/bin/env python3
"""Draws docs/performance.svg from the SUMMARY line of benches/e2e.sh (stdlib only).

    benches/e2e.sh | tee e2e.log
    python3 benches/plot.py e2e.log docs/performance.svg
"""
import sys


def summary(path):
    for line in open(path, encoding="utf-8"):
        if line.startswith("SUMMARY "):
            fields = dict(kv.split("=", 1) for kv in line.split()[1:])
            num = lambda k: float(fields[k].rstrip("/s").rstrip("ms").rstrip("MiB"))
            return fields, num
    sys.exit(f"{path}: no SUMMARY line")


def bars(x0, y0, w, h, title, unit, items):
    top = max(v for _, v in items) or 1.0
    out = [f'<text x="{x0}" y="{y0 - 12}" font-size="14" font-weight="bold">{title}</text>']
    bw = w / (len(items) * 1.6)
    for i, (label, v) in enumerate(items):
        bh = h * v / top
        x = x0 + i * bw * 1.6 + bw * 0.3
        out.append(f'<rect x="{x:.1f}" y="{y0 + h - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" fill="#3b6ea5"/>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{y0 + h - bh - 4:.1f}" font-size="11" text-anchor="middle">{v:,.0f} {unit}</text>')
        out.append(f'<text x="{x + bw / 2:.1f}" y="{y0 + h + 14:.1f}" font-size="11" text-anchor="middle">{label}</text>')
    out.append(f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="#333"/>')
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    f, num = summary(src)
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="760" height="300" font-family="sans-serif">',
             '<rect width="760" height="300" fill="white"/>']
    parts += bars(30, 40, 330, 200, "Throughput (events/s)", "", [
        ("raw consume", num("ceiling")), ("at-least-once", num("vigil_al1")), ("exactly-once", num("vigil_eos"))])
    latency = [("p50", num("p50")), ("p99", num("p99")), ("p99.9", num("p999"))]
    if "transit_p99" in f:  # the same load read back with no vigil in between
        latency.append(("p99 no vigil", num("transit_p99")))
    if "input_p99" in f:  # the input read beside vigil: the broker's share under its load
        latency.append(("p99 input leg", num("input_p99")))
    parts += bars(410, 40, 330, 200, "Event-to-revocation latency at half load", "ms", latency)
    parts.append(f'<text x="30" y="290" font-size="11">benches/e2e.sh, {f["events"]} events; ratio at-least-once/ceiling {f["ratio"]}</text>')
    parts.append("</svg>")
    open(dst, "w", encoding="utf-8").write("\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
