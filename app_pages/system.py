"""System: GPUs, RAM, CPU, disk, and the resource use of the runs training now."""

import psutil
import streamlit as st

from atft_core.system import machine_status
from ui import live, state

REFRESH_SECONDS = 2
GiB = 2**30

st.title("System")


@st.fragment(run_every=REFRESH_SECONDS)
def machine() -> None:
    status = machine_status(paths=(state.runs_dir(), state.data_dir()))
    cols = st.columns(4)
    cols[0].metric("CPU cores", status.cpu_count, help=f"load now {psutil.cpu_percent(None):.0f}%")
    cols[1].metric("RAM free", f"{status.ram_available / GiB:.1f} GiB", help=f"of {status.ram_total / GiB:.1f} GiB")
    cols[2].metric("GPUs", len(status.gpus), help=status.gpu_note or None)
    cols[3].metric("CUDA available", "yes" if status.cuda_available else "no")
    if status.gpus:
        st.dataframe([{"gpu": g.index, "name": g.name, "free (GiB)": round(g.memory_free / GiB, 1),
                       "total (GiB)": round(g.memory_total / GiB, 1), "utilisation %": g.utilization,
                       "processes": ", ".join(str(p.get("pid")) for p in g.processes)} for g in status.gpus],
                     hide_index=True)
    else:
        st.info(f"No GPU ({status.gpu_note or 'no device'}): training runs on the CPU.")
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
