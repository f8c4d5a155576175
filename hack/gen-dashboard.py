import json
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'namespace="$namespace", cluster=~"$cluster", pod=~"$pod"'
VOL = "pod, volume_type, tablespace"
LEG_VOL = "{{pod}} {{volume_type}} {{tablespace}}"
panels = []
pid = [0]
y = [0]

def nid():
    pid[0] += 1
    return pid[0]

def row(title):
    panels.append({"type": "row", "title": title, "id": nid(), "collapsed": False,
                   "gridPos": {"h": 1, "w": 24, "x": 0, "y": y[0]}, "panels": []})
    y[0] += 1

def target(expr, legend, instant=False, fmt="time_series", ref="A"):
    t = {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t.update({"instant": True, "range": False, "format": fmt})
    return t

def panel(kind, title, targets, x, w, h, desc, unit=None, extra=None, fc_extra=None):
    fc = {"defaults": {}, "overrides": []}
    if unit:
        fc["defaults"]["unit"] = unit
    if fc_extra:
        fc["defaults"].update(fc_extra)
    p = {"type": kind, "title": title, "id": nid(), "datasource": DS, "description": desc,
         "gridPos": {"h": h, "w": w, "x": x, "y": y[0]}, "targets": targets, "fieldConfig": fc,
         "options": {}}
    if kind == "timeseries":
        p["options"] = {"legend": {"displayMode": "table", "placement": "right", "showLegend": True,
                                    "calcs": ["lastNotNull", "max"]},
                        "tooltip": {"mode": "multi", "sort": "desc"}}
    if extra:
        p["options"].update(extra)
    panels.append(p)

def steps(*pairs):
    return {"thresholds": {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in pairs]}}

row("Disk usage")
panel("timeseries", "Used %", [target(f'max by ({VOL}) (cnpg_disk_percent_used{{{SEL}}})', LEG_VOL)],
      0, 12, 8, "Used space per volume (df semantics: used / (used + available)). The default auto-resize trigger is 80 %.",
      "percent", fc_extra={"min": 0, "max": 100, **steps((None, "green"), (80, "yellow"), (90, "orange"), (95, "red")),
                           "custom": {"thresholdsStyle": {"mode": "line+area"}}})
panel("timeseries", "Used and total bytes", [
      target(f'max by ({VOL}) (cnpg_disk_used_bytes{{{SEL}}})', "used " + LEG_VOL, ref="A"),
      target(f'max by ({VOL}) (cnpg_disk_total_bytes{{{SEL}}})', "total " + LEG_VOL, ref="B")],
      12, 12, 8, "Filesystem size grows in steps when a resize lands; used bytes should stay well below it.", "bytes")
y[0] += 8
panel("timeseries", "Available bytes", [target(f'max by ({VOL}) (cnpg_disk_available_bytes{{{SEL}}})', LEG_VOL)],
      0, 12, 7, "Space still available to PostgreSQL (f_bavail). Compare with the minAvailable trigger.", "bytes")
panel("timeseries", "Inodes used %", [target(
      f'100 * max by ({VOL}) (cnpg_disk_inodes_used{{{SEL}}}) / max by ({VOL}) (cnpg_disk_inodes_total{{{SEL}}})', LEG_VOL)],
      12, 12, 7, "Inode usage; a filesystem can be full of inodes long before it is full of bytes.", "percent",
      fc_extra={"min": 0, "max": 100})
y[0] += 7

row("Forecast")
panel("timeseries", "Growth per hour", [target(
      f'max by ({VOL}) (cnpg_disk_growth_bytes_per_second{{{SEL}}}) * 3600', LEG_VOL)],
      0, 8, 7, "Growth of used bytes per hour, from each manager's own fit over the last 30 minutes "
      "(cnpg_disk_growth_bytes_per_second). No line = no forecast yet (less than 5 minutes of samples, "
      "or not growing). Drives the timeToFull trigger and the horizon step.", "bytes")
panel("timeseries", "Time to full", [target(
      f'max by ({VOL}) (cnpg_disk_available_bytes{{{SEL}}}) / max by ({VOL}) (cnpg_disk_growth_bytes_per_second{{{SEL}}} > 0)',
      LEG_VOL)],
      8, 8, 7, "Available bytes divided by the forecast growth rate. Below 1 h while the volume cannot be "
      "resized, CNPGVolumeFillingFast fires.", "s",
      fc_extra={"min": 0, **steps((None, "red"), (3600, "orange"), (21600, "green")),
                "custom": {"thresholdsStyle": {"mode": "line"}}})
panel("table", "Recommended sizes (Recommend mode)", [target(
      f'max by ({VOL}) (cnpg_disk_resize_recommended_bytes{{{SEL}}})', "", instant=True, fmt="table")],
      16, 8, 7, "With strategy.mode: Recommend the planner decides but never patches: the size it would "
      "grow each PVC to (AutoResizeRecommended events say why).", "bytes")
panels[-1]["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
y[0] += 7

row("Auto-resize")
panel("stat", "Resize budget remaining (24 h)", [target(
      f'max by ({VOL}) (cnpg_disk_resize_budget_remaining{{{SEL}}})', LEG_VOL, instant=True)],
      0, 8, 6, "Resizes still allowed per PVC in the rolling 24 h window (maxActionsPerDay minus recent successes).",
      "none", extra={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
                     "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
      fc_extra=steps((None, "red"), (1, "yellow"), (2, "green")))
panel("table", "Blocked volumes (now)", [target(
      f'max by ({VOL}, reason) (cnpg_disk_resize_blocked{{{SEL}, reason!~"not_triggered|resize_in_progress"}}) == 1',
      "", instant=True, fmt="table")],
      8, 10, 6, "Volumes whose decision is currently blocked or without status, with the reason code "
      "(expansion_failed, cooldown, rate_limit, at_limit, single_volume_no_ack, archive_unhealthy, pending_wal_exceeded, "
      "slot_retention_exceeded, invalid_config, no_status).",
      extra={"showHeader": True},
      )
panels[-1]["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}]
panel("table", "Next resize possible at", [target(
      f'max by ({VOL}) (cnpg_disk_resize_next_action_timestamp_seconds{{{SEL}}}) * 1000', "", instant=True, fmt="table")],
      18, 6, 6, "When the daily budget is used up: the time the oldest counted resize leaves the 24 h window.",
      "dateTimeAsIso")
panels[-1]["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
y[0] += 6
panel("timeseries", "Blocked reasons over time", [target(
      f'max by ({VOL}, reason) (cnpg_disk_resize_blocked{{{SEL}, reason!="not_triggered"}}) == 1',
      "{{pod}} {{volume_type}} {{tablespace}}: {{reason}}")],
      0, 12, 7, "Which decision reason was active, per volume (1 = active).", "none",
      fc_extra={"custom": {"drawStyle": "points", "pointSize": 4}})
panel("timeseries", "Resizes per hour", [target(
      f'sum by (pod, volume_type, tablespace, result) (increase(cnpg_disk_resizes_total{{{SEL}}}[1h]))',
      "{{pod}} {{volume_type}} {{tablespace}} {{result}}")],
      12, 12, 7, "Resizes executed (success / failure) per volume.", "none",
      fc_extra={"custom": {"drawStyle": "bars", "fillOpacity": 60}})
y[0] += 7
panel("stat", "At limit", [target(f'max by ({VOL}) (cnpg_disk_at_limit{{{SEL}}})', LEG_VOL, instant=True)],
      0, 12, 5, "1 = the PVC reached expansion.limit and will not grow again.", extra={
          "colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
          "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
      fc_extra={"mappings": [{"type": "value", "options": {"0": {"text": "below limit"}, "1": {"text": "AT LIMIT"}}}],
                **steps((None, "green"), (1, "orange"))})
panel("stat", "Resize stuck", [target(f'max by ({VOL}) (cnpg_disk_resize_stuck{{{SEL}}})', LEG_VOL, instant=True)],
      12, 12, 5, "1 = a requested resize has not reached the filesystem for longer than --stuck-resize-after (CSI failure).",
      extra={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
             "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
      fc_extra={"mappings": [{"type": "value", "options": {"0": {"text": "ok"}, "1": {"text": "STUCK"}}}],
                **steps((None, "green"), (1, "red"))})
y[0] += 5

row("WAL health")
panel("stat", "Archiving", [target(
      'max by (pod) (cnpg_wal_archive_healthy{%s})' % SEL, "{{pod}}", instant=True, ref="A")],
      0, 8, 6, "pg_stat_archiver: healthy unless the last failure is later than the last success.",
      extra={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
             "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
      fc_extra={"mappings": [{"type": "value", "options": {"0": {"text": "FAILING"}, "1": {"text": "healthy"}}}],
                **steps((None, "red"), (1, "green"))})
panel("stat", "WAL health check", [target(
      'max by (pod) (cnpg_wal_health_up{%s})' % SEL, "{{pod}}", instant=True)],
      8, 8, 6, "0 = PostgreSQL could not be queried (down, error, timeout); resizes then fail open.",
      extra={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
             "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
      fc_extra={"mappings": [{"type": "value", "options": {"0": {"text": "DOWN"}, "1": {"text": "up"}}}],
                **steps((None, "red"), (1, "green"))})
panel("stat", "Inactive replication slots", [target(
      'max by (pod) (cnpg_wal_inactive_slots{%s})' % SEL, "{{pod}}", instant=True)],
      16, 8, 6, "Inactive physical replication slots; WAL behind them is never removed.",
      extra={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
             "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
      fc_extra=steps((None, "green"), (1, "orange")))
y[0] += 6
panel("timeseries", "WAL files waiting to be archived", [target(
      'max by (pod) (cnpg_wal_pending_archive_files{%s})' % SEL, "{{pod}}")],
      0, 12, 7, ".ready files in pg_wal/archive_status. Above maxPendingWALFiles the WAL volume is not grown.", "none")
panel("timeseries", "WAL retained by inactive slots", [target(
      'max by (pod, slot_name) (cnpg_wal_slot_retention_bytes{%s})' % SEL, "{{pod}} {{slot_name}}")],
      12, 12, 7, "Bytes of WAL each inactive slot retains. Above maxSlotRetentionBytes the WAL volume is not grown.", "bytes")
y[0] += 7

row("Manager")
panel("stat", "Leader", [target('max by (pod) (cnpg_autoresize_is_leader{%s})' % SEL, "{{pod}}", instant=True)],
      0, 8, 6, "The pod holding the Lease cnpg-autoresize-<cluster>; exactly one per cluster plans and resizes.",
      extra={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
             "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
      fc_extra={"mappings": [{"type": "value", "options": {"0": {"text": "follower"}, "1": {"text": "LEADER"}}}],
                **steps((None, "text"), (1, "blue"))})
panel("table", "Versions", [target('max by (pod, version) (cnpg_autoresize_build_info{%s})' % SEL, "", instant=True, fmt="table")],
      8, 6, 6, "cnpg_autoresize_build_info per pod.")
panels[-1]["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}]
panel("timeseries", "Leader changes (lease holder)", [target(
      'sum by (cluster) (changes(cnpg_autoresize_is_leader{%s}[$__rate_interval]))' % SEL, "{{cluster}}")],
      14, 10, 6, "Leadership transitions; frequent changes point to lease renewal problems (API latency, pod restarts).", "none")
y[0] += 6
panel("timeseries", "Probe / WAL check latency (p99)", [
      target('histogram_quantile(0.99, sum by (le, pod) (rate(cnpg_autoresize_probe_duration_seconds_bucket{%s}[$__rate_interval])))' % SEL, "disk probe {{pod}}", ref="A"),
      target('histogram_quantile(0.99, sum by (le, pod) (rate(cnpg_autoresize_wal_check_duration_seconds_bucket{%s}[$__rate_interval])))' % SEL, "WAL check {{pod}}", ref="B")],
      0, 12, 7, "statvfs probes take microseconds; WAL checks are bounded by the query timeouts.", "s")
panel("timeseries", "Kubernetes API requests", [target(
      'sum by (verb, resource, code) (rate(cnpg_autoresize_api_requests_total{%s}[$__rate_interval]))' % SEL, "{{verb}} {{resource}} {{code}}")],
      12, 12, 7, "API calls by verb, resource and HTTP code. Steady state is watches plus lease renewals; 409/422 mean a conflicting writer was detected.", "reqps")
y[0] += 7
panel("stat", "API server reachable", [target(
      'max by (pod) (cnpg_autoresize_api_up{%s})' % SEL, "{{pod}}", instant=True)],
      0, 8, 6, "1 = the API server answered the manager's last request. While it is 0 nothing is resized, "
      "but disk probes, metrics and /readyz go on (PostgreSQL stays in its Services).",
      extra={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name",
             "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}},
      fc_extra={"mappings": [{"type": "value", "options": {"0": {"text": "UNREACHABLE"}, "1": {"text": "up"}}}],
                **steps((None, "red"), (1, "green"))})
panel("timeseries", "API server reachability", [target(
      'min by (pod) (cnpg_autoresize_api_up{%s})' % SEL, "{{pod}}")],
      8, 6, 6, "cnpg_autoresize_api_up over time: outages and their length.", "none",
      fc_extra={"min": 0, "max": 1, "custom": {"drawStyle": "line", "lineInterpolation": "stepAfter"}})
panel("timeseries", "Actor restarts", [target(
      'sum by (pod, actor) (increase(cnpg_autoresize_actor_restarts_total{%s}[$__rate_interval]))' % SEL,
      "{{pod}} {{actor}}")],
      14, 10, 6, "Actors restarted after a panic or an unexpected stop (cnpg_autoresize_actor_restarts_total). "
      "An actor that keeps failing makes /healthz fail, and the kubelet restarts the container.", "none",
      fc_extra={"custom": {"drawStyle": "bars", "fillOpacity": 60}})

def var(name, label, query, multi, include_all):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "definition": query, "refresh": 2, "sort": 1, "multi": multi, "includeAll": include_all,
            **({"allValue": ".*"} if include_all else {}), "current": {}, "hide": 0}

dash = {
    "title": "CloudNativePG / auto-resize",
    "uid": "cnpg-autoresize",
    "description": "Volume usage, auto-resize decisions and WAL safety of cnpg-autoresize.",
    "tags": ["cloudnative-pg", "postgresql", "storage", "cnpg-autoresize"],
    "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1,
    "time": {"from": "now-24h", "to": "now"}, "refresh": "30s", "timezone": "",
    "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                              "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                              "name": "Annotations & Alerts", "type": "dashboard"}]},
    "templating": {"list": [
        {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
         "current": {}, "hide": 0, "refresh": 1},
        var("namespace", "Namespace", "label_values(cnpg_autoresize_build_info, namespace)", False, False),
        var("cluster", "Cluster", 'label_values(cnpg_autoresize_build_info{namespace="$namespace"}, cluster)', True, True),
        var("pod", "Instance", 'label_values(cnpg_autoresize_build_info{namespace="$namespace", cluster=~"$cluster"}, pod)', True, True),
    ]},
    "panels": panels,
}
print(json.dumps(dash, indent=2))
