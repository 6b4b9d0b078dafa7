// nanomdm console: small enhancements. Every page works without them.
"use strict";
document.documentElement.classList.add("js");

// Times: shown in the viewer's zone, with how long ago; the absolute
// time, zone included, on hover.
function showTimes() {
  const fmt = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric",
    hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
  const rel = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const now = Date.now();
  for (const el of document.querySelectorAll("time[datetime]")) {
    const t = new Date(el.getAttribute("datetime"));
    if (isNaN(t)) continue;
    const secs = Math.round((t.getTime() - now) / 1000);
    const abs = Math.abs(secs);
    let ago;
    if (abs < 60) ago = rel.format(secs, "second");
    else if (abs < 3600) ago = rel.format(Math.round(secs / 60), "minute");
    else if (abs < 86400) ago = rel.format(Math.round(secs / 3600), "hour");
    else if (abs < 86400 * 60) ago = rel.format(Math.round(secs / 86400), "day");
    else ago = null;
    const local = fmt.format(t);
    el.textContent = ago ? ago : local;
    el.title = local;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  showTimes();
  setInterval(showTimes, 30000);
  // Ask before destructive actions.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
  // Live refresh while waiting for a device: reload while the tab is seen.
  const wait = document.querySelector("[data-refresh]");
  if (wait) {
    setInterval(() => { if (!document.hidden) location.reload(); }, 1000 * Number(wait.dataset.refresh));
  }
  // Choosing a template shows its form at once.
  for (const sel of document.querySelectorAll("select[data-autosubmit]")) {
    sel.addEventListener("change", () => sel.form.submit());
  }
});
