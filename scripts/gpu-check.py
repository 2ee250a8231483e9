#!/usr/bin/env python3
"""Check Gantry's GPU support on a machine with an NVIDIA GPU.

Runs `gantry dev` (the exec driver; no Docker engine needed), then:
  1. compares what the agent discovered (GET /v1/nodes/<id>) with
     `nvidia-smi -q -x` (and --query-gpu for the compute capability, sysfs
     for the NUMA node) field by field;
  2. runs a batch task given one GPU and two given none (one of which
     drops CUDA_VISIBLE_DEVICES, as a hostile process would), each asking
     torch.cuda.device_count();
  3. scrapes the agent's and the server's /metrics while the GPU task
     holds memory, and reads the node's usage history;
and writes an artifact: summary.md, report.json and the raw outputs.

It never changes a GPU setting (no MIG mode, no reset, no clocks, no
compute mode, no MPS daemon). Usage:
  scripts/gpu-check.py --gantry path/to/gantry --out DIR [--python PY]
The Python that runs the tasks must have torch (default: this one).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(url, raw=False, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        b = r.read()
    return b.decode() if raw else json.loads(b)


def wait_for(what, fn, timeout=90, every=0.5):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(every)
    raise SystemExit(f"timed out waiting for {what} (last error: {last})")


def smi_text(el, path):
    x = el.find(path)
    return None if x is None or x.text is None else x.text.strip()


def mib(s):
    m = re.match(r"\s*(\d+)\s*MiB", s or "")
    return int(m.group(1)) if m else None


def numa_sysfs(bus_id):
    bid = bus_id.lower()[-12:]
    try:
        with open(f"/sys/bus/pci/devices/{bid}/numa_node") as f:
            return int(f.read().strip())
    except OSError:
        return None


def field(name, gantry, smi, match=None, note=""):
    if match is None:
        match = gantry == smi
    return {"field": name, "gantry": gantry, "nvidia_smi": smi, "match": bool(match), "note": note}


def compare(node, smi_root, query):
    rows = []
    attrs = node.get("attributes", {})
    rows.append(field("driver version", attrs.get("gpu.driver.version"), smi_text(smi_root, "driver_version")))
    rows.append(field("CUDA version", attrs.get("gpu.cuda.version"), smi_text(smi_root, "cuda_version")))
    smi_gpus = smi_root.findall("gpu")
    gpus = node.get("gpus") or []
    rows.append(field("GPU count", len(gpus), len(smi_gpus)))
    by_uuid = {g["uuid"]: g for g in gpus}
    for sg in smi_gpus:
        uuid = smi_text(sg, "uuid")
        g = by_uuid.get(uuid)
        p = f"GPU {uuid}: "
        if g is None:
            rows.append(field(p + "discovered", None, uuid, False))
            continue
        rows.append(field(p + "UUID", g["uuid"], uuid))
        rows.append(field(p + "model", g.get("model"), smi_text(sg, "product_name")))
        rows.append(field(p + "memory (MiB)", g.get("memory"), mib(smi_text(sg, "fb_memory_usage/total"))))
        q = query.get(uuid, {})
        rows.append(field(p + "compute capability", g.get("compute_capability"), q.get("compute_cap")))
        bus = smi_text(sg, "pci/pci_bus_id") or sg.get("id")
        rows.append(field(p + "PCI bus id", (g.get("pci_bus_id") or "").upper(), (bus or "").upper()))
        numa_smi = smi_text(sg, "numa_node") or smi_text(sg, "pci/numa_node")
        numa_ref = int(numa_smi) if numa_smi and numa_smi.lstrip("-").isdigit() else numa_sysfs(bus or "")
        rows.append(field(p + "NUMA node", g.get("numa_node"), numa_ref,
                          note="nvidia-smi -q -x has no NUMA node here: compared with sysfs" if not numa_smi else ""))
        mig = (smi_text(sg, "mig_mode/current_mig") or "N/A")
        rows.append(field(p + "MIG mode", bool(g.get("mig_enabled")), mig == "Enabled", note=f"nvidia-smi: {mig}"))
        smi_migs = sg.findall("mig_devices/mig_device")
        rows.append(field(p + "MIG instances", len(g.get("mig_instances") or []), len(smi_migs)))
        links = [l for l in sg.findall("nvlink/link") if (smi_text(l, "state") or "").lower() == "active"] if sg.find("nvlink") is not None else []
        rows.append(field(p + "NVLink peers", len(g.get("nvlink_peers") or []), None, match=True,
                          note=f"{len(smi_gpus) - 1} other GPU(s) on the node; nvidia-smi -q -x active links listed: {len(links)}"))
        vol = smi_text(sg, "ecc_errors/volatile/dram_uncorrectable") or smi_text(sg, "ecc_errors/volatile/double_bit/total")
        pend = smi_text(sg, "retired_pages/pending_retirement") or smi_text(sg, "retired_pages/pending_blacklist")
        remap_pend = smi_text(sg, "remapped_rows/remapping_pending") or smi_text(sg, "remapped_rows/pending")
        remap_fail = smi_text(sg, "remapped_rows/remapping_failure_occurred") or smi_text(sg, "remapped_rows/failure")
        smi_bad = any([
            vol not in (None, "0", "N/A"),
            (pend or "").lower() == "yes",
            (remap_pend or "").lower() == "yes",
            (remap_fail or "").lower() == "yes",
        ])
        rows.append(field(p + "unhealthy", bool(g.get("unhealthy")), smi_bad,
                          note=f"gantry reason: {g.get('health_reason') or '-'}; nvidia-smi volatile uncorrectable ECC {vol}, "
                               f"pending retirement {pend}, row remapping pending {remap_pend}, failed {remap_fail}"))
        minor = smi_text(sg, "minor_number")
        rows.append(field(p + "minor number (metrics device label)", None, minor, match=True,
                          note="checked against the DCGM 'device' label below"))
    return rows


SPEC = """name: {name}
type: batch
groups:
  - name: main
    count: 1
    restart: {{attempts: 0, interval: 1m, delay: 1s, mode: fail}}
    tasks:
      - name: main
        driver: exec
        config:
          command: {cmd}
          args: {args}
        resources:
          cpu: 1000
          memory: 8192
{gpu}"""

PROBE = ("import os, time, torch; n = torch.cuda.device_count(); "
         "print('device_count', n, 'CUDA_VISIBLE_DEVICES', repr(os.environ.get('CUDA_VISIBLE_DEVICES'))); "
         "x = torch.ones(256 << 20, device='cuda') if n else None; "
         "print('allocated MiB', 0 if x is None else x.numel() * 4 >> 20, flush=True); "
         "time.sleep(float(os.environ.get('HOLD', '0')))")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gantry", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()
    out = a.out
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="gantry-gpu-check-")
    report = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": socket.gethostname()}

    # nvidia-smi first: the reference.
    smi_xml = subprocess.run(["nvidia-smi", "-q", "-x"], capture_output=True, text=True, check=True).stdout
    with open(os.path.join(out, "nvidia-smi.xml"), "w") as f:
        f.write(smi_xml)
    smi_root = ET.fromstring(smi_xml)
    query = {}
    qr = subprocess.run(["nvidia-smi", "--query-gpu=uuid,compute_cap", "--format=csv,noheader"], capture_output=True, text=True)
    for line in qr.stdout.splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 2:
            query[parts[0]] = {"compute_cap": parts[1]}
    with open("/proc/mounts") as f:
        report["cgroup"] = "v2" if any(l.split()[1] == "/sys/fs/cgroup" and l.split()[2] == "cgroup2" for l in f) else "v1 or none"

    api, agent = free_port(), free_port()
    base = f"http://127.0.0.1:{api}"
    env = dict(os.environ, GANTRY_ADDRESS=base)
    log = open(os.path.join(out, "gantry-dev.log"), "w")
    dev = subprocess.Popen([a.gantry, "dev", "--data-dir", os.path.join(work, "data"),
                            "--http-addr", f"127.0.0.1:{api}", "--agent-addr", f"127.0.0.1:{agent}",
                            "--etcd-client-url", f"http://127.0.0.1:{free_port()}",
                            "--etcd-peer-url", f"http://127.0.0.1:{free_port()}",
                            "--node-name", "gpu-check", "--sample-interval", "2s"],
                           stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        nodes = wait_for("the node", lambda: [n for n in get(base + "/v1/nodes") if n["status"] == "ready"])
        node = get(base + "/v1/nodes/" + nodes[0]["id"])
        report["node"] = {k: node.get(k) for k in ("id", "name", "attributes", "gpus")}
        report["exec_isolation"] = node["drivers"]["exec"].get("isolation")
        rows = compare(node, smi_root, query)
        report["discovery"] = rows

        def run_job(name, args, gpu, hold="0", extra_env=None):
            spec = SPEC.format(name=name, cmd=json.dumps(args[0]), args=json.dumps(args[1:]),
                               gpu="          gpu: {count: 1}\n" if gpu else "")
            if extra_env:
                spec = spec.replace("          args:", "          env: " + json.dumps(extra_env) + "\n          args:")
            p = os.path.join(work, name + ".yaml")
            with open(p, "w") as f:
                f.write(spec)
            r = subprocess.run([a.gantry, "job", "run", "-d", p], capture_output=True, text=True, env=env)
            return {"name": name, "submit": (r.stdout + r.stderr).strip(), "rc": r.returncode}

        def finish(job, timeout=150):
            start = time.time()

            def done():
                al = get(f"{base}/v1/jobs/{job['name']}/allocations")
                if not al and time.time() - start > 30:
                    return [{"id": "", "client_status": "not placed within 30s", "resources": {}}]
                return al if al and all(x["client_status"] in ("complete", "failed") for x in al) else None
            try:
                al = wait_for(f"job {job['name']}", done, timeout=timeout, every=1)
            except SystemExit as e:
                job["error"] = str(e)
                al = get(f"{base}/v1/jobs/{job['name']}/allocations")
            job["allocations"] = [{"id": x["id"], "client_status": x["client_status"],
                                   "gpu": (x.get("resources", {}).get("main") or {}).get("gpu"),
                                   "events": [e.get("type") + ": " + e.get("message", "") for e in ((x.get("task_states") or {}).get("main") or {}).get("events", [])]}
                                  for x in al]
            if al and al[0]["id"]:
                lg = subprocess.run([a.gantry, "alloc", "logs", al[0]["id"], "main"], capture_output=True, text=True, env=env)
                job["stdout"] = lg.stdout.strip()
                job["stderr_tail"] = subprocess.run([a.gantry, "alloc", "logs", "--stderr", al[0]["id"], "main"], capture_output=True, text=True, env=env).stdout.strip()[-600:]
            return job

        py = a.python
        jobs = []
        gpu_job = run_job("gpu-task", [py, "-c", PROBE], gpu=True, extra_env={"HOLD": "10"})
        # While it holds its GPU memory: the agent's metrics with the holder.
        def held():
            m = get(f"http://127.0.0.1:{agent}/metrics", raw=True)
            return m if re.search(r'DCGM_FI_DEV_FB_USED\{[^}]*job="gpu-task"', m) else None
        try:
            agent_metrics = wait_for("GPU series labelled with the GPU task", held, timeout=60, every=1)
            report["holder_labels_seen"] = True
        except SystemExit:
            agent_metrics = get(f"http://127.0.0.1:{agent}/metrics", raw=True)
            report["holder_labels_seen"] = False
        jobs.append(finish(gpu_job))
        jobs.append(finish(run_job("no-gpu-task", [py, "-c", PROBE], gpu=False)))
        jobs.append(finish(run_job("no-gpu-hostile", ["/usr/bin/env", "-u", "CUDA_VISIBLE_DEVICES", py, "-c", PROBE], gpu=False)))
        report["jobs"] = jobs

        with open(os.path.join(out, "agent-metrics.txt"), "w") as f:
            f.write(agent_metrics)
        server_metrics = get(base + "/metrics", raw=True)
        with open(os.path.join(out, "server-metrics.txt"), "w") as f:
            f.write(server_metrics)
        names = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_POWER_USAGE",
                 "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_XID_ERRORS", "gantry_node_cpu_used_millicores",
                 "gantry_node_memory_used_bytes", "gantry_alloc_cpu_used_millicores", "gantry_alloc_memory_used_bytes"]
        report["agent_series"] = {n: [l for l in agent_metrics.splitlines() if l.startswith(n + "{") or l.startswith(n + " ")] for n in names}
        report["server_series"] = {n: [l for l in server_metrics.splitlines() if l.startswith(n)][:6]
                                   for n in ["gantry_scheduling_latency_seconds_count", "gantry_eval_queue_depth",
                                             "gantry_plan_rejections_total", "gantry_evals_processed_total", "gantry_nodes"]}
        minors = {smi_text(g, "uuid"): smi_text(g, "minor_number") for g in smi_root.findall("gpu")}
        for r in rows:
            if r["field"].endswith("minor number (metrics device label)"):
                uuid = r["field"].split(" ")[1].rstrip(":")
                m = re.search(r'DCGM_FI_DEV_FB_USED\{[^}]*UUID="' + re.escape(uuid) + r'"[^}]*\}', agent_metrics)
                dev_label = re.search(r'device="([^"]*)"', m.group(0)).group(1) if m else None
                r["gantry"] = dev_label
                r["match"] = dev_label == f"nvidia{minors.get(uuid)}"
        hist = get(f"{base}/v1/nodes/{node['id']}/metrics")
        report["history_samples"] = len(hist["samples"])
        report["history_last"] = hist["samples"][-1] if hist["samples"] else None
        st = subprocess.run([a.gantry, "node", "status", "gpu-check"], capture_output=True, text=True, env=env)
        with open(os.path.join(out, "node-status.txt"), "w") as f:
            f.write(st.stdout + st.stderr)
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(work, ignore_errors=True)

    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    write_summary(out, report)
    bad = [r for r in report["discovery"] if not r["match"]]
    return 1 if bad else 0


def write_summary(out, rep):
    L = [f"# Gantry GPU check — {rep['time']} on {rep['host']}", ""]
    attrs = rep["node"]["attributes"]
    L.append(f"- gpu.status: {attrs.get('gpu.status')}")
    L.append(f"- gpu.mps: {attrs.get('gpu.mps')}")
    L.append(f"- cgroup: {rep['cgroup']}")
    L.append(f"- exec driver isolation: {rep['exec_isolation']}")
    L += ["", "## Discovery against nvidia-smi -q -x", "", "| field | gantry | nvidia-smi | match | note |", "|---|---|---|---|---|"]
    for r in rep["discovery"]:
        L.append(f"| {r['field']} | {r['gantry']} | {r['nvidia_smi']} | {'yes' if r['match'] else 'NO'} | {r['note']} |")
    L += ["", "## Tasks (exec driver)", ""]
    for j in rep["jobs"]:
        st = ", ".join(x["client_status"] for x in j.get("allocations", []))
        L.append(f"- {j['name']}: {st}; gpu {json.dumps([x['gpu'] for x in j.get('allocations', [])])}")
        L.append(f"  - stdout: {j.get('stdout', '')!r}")
        if j.get("error"):
            L.append(f"  - error: {j['error']}")
    L += ["", "## Metrics", "", f"- GPU series labelled with the holding job seen: {rep.get('holder_labels_seen')}"]
    for n, lines in rep["agent_series"].items():
        L.append(f"- {n}: {len(lines)} series" + (f"; e.g. `{lines[0]}`" if lines else ""))
    for n, lines in rep["server_series"].items():
        L.append(f"- {n}: " + "; ".join(f"`{l}`" for l in lines[:3]))
    L.append(f"- node history: {rep['history_samples']} samples; last {json.dumps(rep['history_last'])}")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    sys.exit(main())
