// Kiroku's only script: countdowns to response-start targets tick, and an
// incident's timeline refreshes itself. Pages work without it.
"use strict";

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll(".countdown[data-due]")) {
    const due = Date.parse(el.dataset.due);
    if (Number.isNaN(due)) continue;
    let minutes = Math.round((due - now) / 60000);
    const overdue = minutes < 0;
    minutes = Math.abs(minutes);
    const text = minutes >= 60
      ? `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, "0")}m`
      : `${minutes}m`;
    el.textContent = overdue ? `${text} ${el.dataset.overdueWord || ""}`.trim() : text;
    el.classList.toggle("overdue", overdue);
  }
}

// Times come from the server in its configured zone; shown here in the
// reader's own, with the server's text kept as the tooltip.
function localise(root) {
  const lang = document.documentElement.lang || undefined;
  const format = new Intl.DateTimeFormat(lang, { dateStyle: "medium", timeStyle: "short" });
  for (const el of root.querySelectorAll("time[datetime]")) {
    const at = Date.parse(el.getAttribute("datetime"));
    if (Number.isNaN(at) || el.dataset.localised) continue;
    el.title = el.textContent;
    el.textContent = format.format(new Date(at));
    el.dataset.localised = "1";
  }
}

async function refresh(box) {
  try {
    const res = await fetch(box.dataset.live, { credentials: "same-origin" });
    if (!res.ok) return;
    const html = await res.text();
    const parsed = new DOMParser().parseFromString(html, "text/html");
    const fresh = parsed.getElementById("timeline");
    const current = box.querySelector("#timeline");
    // Compared as the server sent it, before times are localised.
    if (fresh && current && fresh.innerHTML !== box.dataset.last) {
      box.dataset.last = fresh.innerHTML;
      const node = document.importNode(fresh, true);
      localise(node);
      current.replaceWith(node);
    }
  } catch (_) {
    // Offline for a moment: the next round tries again.
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("[data-live]")) {
    const current = box.querySelector("#timeline");
    if (current) box.dataset.last = current.innerHTML;
  }
  localise(document);
  tick();
  setInterval(tick, 15000);
  for (const box of document.querySelectorAll("[data-live]")) {
    setInterval(() => refresh(box), 5000);
  }
});
