"""System: CPU, memory and GPU load now and over the last minutes, free disk, and the resource
use of the runs training now."""

import streamlit as st

from atft_core.monitor import HISTORY_SECONDS
from atft_core.system import GiB, machine_status
from ui import charts, live, state

REFRESH_SECONDS = 2

st.title("System")


@st.fragment(run_every=REFRESH_SECONDS)
def machine() -> None:
    history = live.machine_history()
    status = machine_status(paths=(state.runs_dir(), state.data_dir()))
    last = history.samples()[-1]
    cols = st.columns(4)
    cols[0].metric(f"CPU load ({status.cpu_count} cores)", f"{last.cpu_percent:.0f}%")
    cols[1].metric(f"Memory used (of {last.ram_total / GiB:.1f} GiB)", f"{last.ram_used / GiB:.1f} GiB")
    cols[2].metric("GPUs", len(status.gpus) if status.gpus else "none")
    cols[3].metric("Free disk (runs folder)", f"{status.disk_free[str(state.runs_dir())] / GiB:.1f} GiB")
    if not status.gpus:
        st.info(f"No GPU: {status.gpu_note or 'none found'}. Training runs on the CPU.")
        if status.gpu_error:
            with st.expander("Details"):
                st.code(status.gpu_error, language=None)
    frame = history.frame()
    st.caption(f"The last {HISTORY_SECONDS / 60:.0f} minutes, sampled every {history.interval:g} s "
               f"since the app started ({len(history.samples())} samples).")
    cols = st.columns(2)
    cols[0].altair_chart(charts.history_chart(frame.filter(chart="cpu"), "CPU load", "% of all cores", (0, 100)))
    cols[1].altair_chart(charts.history_chart(frame.filter(chart="memory"), "Memory", "GiB used",
                                              (0, last.ram_total / GiB)))
    if status.gpus:
        cols = st.columns(2)
        cols[0].altair_chart(charts.history_chart(frame.filter(chart="gpu"), "GPU utilisation", "%", (0, 100)))
        cols[1].altair_chart(charts.history_chart(frame.filter(chart="gpu memory"), "GPU memory", "GiB used"))
        st.dataframe([{"gpu": g.index, "name": g.name, "used (GiB)": round((g.memory_total - g.memory_free) / GiB, 1),
                       "total (GiB)": round(g.memory_total / GiB, 1), "utilisation %": g.utilization,
                       "processes": ", ".join(str(p.get("pid")) for p in g.processes)} for g in status.gpus],
                     hide_index=True)
    st.dataframe([{"folder": p, "free disk (GiB)": round(free / GiB, 1)} for p, free in status.disk_free.items()],
                 hide_index=True)
    st.subheader("Running runs")
    active = live.running_runs(state.runs_dir())
    if not active:
        st.caption("No run is training now.")
        return
    st.dataframe([{"run": r.id, "name": r.name, "status": r.status, "pid": r.pid,
                   "epoch": f"{r.epoch or 0}/{r.epochs_planned or '?'}", **live.process_usage(r.pid)}
                  for r in active], hide_index=True)


machine()
