// ledgerlab ui: draws the Plotly charts, sorts and filters tables, and keeps the page live by polling its
// `live` twin, which answers 204 while the ledger is unchanged, else the page's parts re-rendered by the server
// (already escaped there: they are inserted as the server wrote them).
(function () {
  "use strict";
  const body = document.body;
  const sorts = {};  // table id -> {key, dir, type}

  function draw(id, fig) {
    const el = document.getElementById(id);
    if (!el || !window.Plotly) return;
    window.Plotly.react(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
    if (!el.dataset.bound) {
      el.dataset.bound = "1";
      el.on("plotly_click", function (ev) {
        const point = ev.points && ev.points[0];
        const number = point && point.customdata && point.customdata[0];
        if (number !== null && number !== undefined && el.dataset.hypBase) {
          window.location.href = el.dataset.hypBase + encodeURIComponent(number);
        }
      });
    }
    el.dataset.drawn = String(fig.data.reduce((n, t) => n + (t.mode === "markers" ? t.x.length : 0), 0));
  }

  function value(row, key, type) {
    const cell = row.children[key];
    const text = cell ? (cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent) : "";
    if (type !== "num") return text.toLowerCase();
    const n = parseFloat(text);
    return isNaN(n) ? null : n;
  }

  function sortTable(table) {
    const s = sorts[table.id];
    if (!s) return;
    const tbody = table.tBodies[0];
    const rows = Array.from(tbody.rows);
    rows.sort(function (a, b) {
      const x = value(a, s.key, s.type), y = value(b, s.key, s.type);
      if (x === y) return 0;
      if (x === null) return 1;  // blanks last either way
      if (y === null) return -1;
      return (x < y ? -1 : 1) * s.dir;
    });
    rows.forEach((row) => tbody.appendChild(row));
    table.querySelectorAll("th[data-key]").forEach(function (th) {
      th.classList.toggle("asc", Number(th.dataset.key) === s.key && s.dir > 0);
      th.classList.toggle("desc", Number(th.dataset.key) === s.key && s.dir < 0);
    });
  }

  function filterTable() {
    const table = document.getElementById("hypotheses");
    if (!table) return;
    const text = (document.getElementById("filter").value || "").toLowerCase();
    const status = document.getElementById("status-filter").value;
    let shown = 0;
    Array.from(table.tBodies[0].rows).forEach(function (row) {
      const ok = (!status || row.dataset.status === status) && (!text || row.textContent.toLowerCase().includes(text));
      row.hidden = !ok;
      if (ok) shown += 1;
    });
    document.getElementById("shown").textContent = shown + " of " + table.tBodies[0].rows.length + " shown";
  }

  function refreshTables() {
    document.querySelectorAll("table.sortable").forEach(sortTable);
    filterTable();
  }

  document.addEventListener("click", function (ev) {
    const th = ev.target.closest && ev.target.closest("table.sortable th[data-key]");
    if (!th) return;
    const table = th.closest("table");
    const key = Number(th.dataset.key);
    const old = sorts[table.id];
    sorts[table.id] = {key: key, type: th.dataset.type || "text", dir: old && old.key === key ? -old.dir : 1};
    sortTable(table);
  });
  ["input", "change"].forEach(function (kind) {
    document.addEventListener(kind, function (ev) {
      if (ev.target.id === "filter" || ev.target.id === "status-filter") filterTable();
    });
  });

  document.querySelectorAll("script.figure").forEach(function (tag) {
    draw(tag.dataset.target, JSON.parse(tag.textContent));
  });
  refreshTables();

  // Live updates: one request at a time, every data-poll ms.
  const live = body.dataset.live;
  const state = document.getElementById("live-state");
  let seq = body.dataset.seq;
  let updates = 0;
  async function poll() {
    const started = Date.now();
    try {
      const sep = live.includes("?") ? "&" : "?";
      const answer = await fetch(live + sep + "seq=" + encodeURIComponent(seq), {cache: "no-store"});
      if (answer.status === 200) {
        const got = await answer.json();
        seq = got.seq;
        Object.entries(got.parts || {}).forEach(function ([id, html]) {
          const el = document.getElementById(id);
          if (el) el.innerHTML = html;
        });
        Object.entries(got.figures || {}).forEach(([id, fig]) => draw(id, fig));
        refreshTables();
        updates += 1;
        body.dataset.updates = String(updates);
      }
      state.className = answer.ok ? "live ok" : "live off";
      state.textContent = answer.ok ? "live · " + new Date().toLocaleTimeString() : "live · error " + answer.status;
    } catch (err) {
      state.className = "live off";
      state.textContent = "live · offline";
    }
    // A long campaign makes each update costlier to compute: wait at least 4x what the last one took, so an
    // open page never keeps a core of a machine the campaign shares busy.
    window.setTimeout(poll, Math.max(Number(body.dataset.poll) || 2000, 4 * (Date.now() - started)));
  }
  if (live) {
    poll();
  } else {
    state.hidden = true;
  }
})();
