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

async function refresh(box) {
  try {
    const res = await fetch(box.dataset.live, { credentials: "same-origin" });
    if (!res.ok) return;
    const html = await res.text();
    const parsed = new DOMParser().parseFromString(html, "text/html");
    const fresh = parsed.getElementById("timeline");
    const current = box.querySelector("#timeline");
    if (fresh && current && fresh.innerHTML !== current.innerHTML) {
      current.replaceWith(document.importNode(fresh, true));
    }
  } catch (_) {
    // Offline for a moment: the next round tries again.
  }
}

document.addEventListener("DOMContentLoaded", () => {
  tick();
  setInterval(tick, 15000);
  for (const box of document.querySelectorAll("[data-live]")) {
    setInterval(() => refresh(box), 5000);
  }
});
