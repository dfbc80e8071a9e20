// The dashboard's only script (the CSP allows no inline ones): draws the plotly
// figures from their <script type="application/json"> blocks, sorts and filters
// tables, and follows /api/tail so new events show up without a reload.
"use strict";
(function () {
  const filters = {}; // table id -> filter text, kept across live refreshes

  function drawFigures(root) {
    if (typeof Plotly === "undefined") return;
    root.querySelectorAll("div.figure[data-figure]").forEach(function (div) {
      const data = document.getElementById(div.dataset.figure);
      if (!data) return;
      const fig = JSON.parse(data.textContent);
      const config = { displaylogo: false, responsive: true };
      Plotly.newPlot(div, fig.data, fig.layout, config).then(function () {
        div.dataset.drawn = "true";
      });
      // Every point carries the address of the event behind it.
      div.on("plotly_click", function (ev) {
        const point = ev.points && ev.points[0];
        const href = point && point.customdata;
        if (typeof href === "string" && href.startsWith("/ui/")) window.location.assign(href);
      });
    });
  }

  function cellValue(row, index) {
    const cell = row.cells[index];
    const text = cell ? cell.textContent.trim() : "";
    const num = Number(text.replace(/,/g, ""));
    return text !== "" && text !== "–" && !Number.isNaN(num) ? num : text.toLowerCase();
  }

  function sortBy(table, th, index) {
    const body = table.tBodies[0];
    const asc = !th.classList.contains("asc");
    table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = cellValue(a, index), y = cellValue(b, index);
      const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1;
      return asc ? order : -order;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function applyFilter(table, text) {
    const needle = text.toLowerCase();
    Array.from(table.tBodies[0].rows).forEach(function (r) {
      r.hidden = needle !== "" && !r.textContent.toLowerCase().includes(needle);
    });
  }

  function enhanceTables(root) {
    root.querySelectorAll("table.data").forEach(function (table) {
      Array.from(table.tHead.rows[0].cells).forEach(function (th, i) {
        th.title = "sort";
        th.addEventListener("click", function () { sortBy(table, th, i); });
      });
      if (!table.id || table.id === "live-events") return;
      const input = document.createElement("input");
      input.type = "search";
      input.placeholder = "filter rows";
      input.className = "filter";
      input.dataset.filterFor = table.id;
      input.value = filters[table.id] || "";
      input.addEventListener("input", function () {
        filters[table.id] = input.value;
        applyFilter(table, input.value);
      });
      table.parentNode.insertBefore(input, table);
      applyFilter(table, input.value);
    });
  }

  let refreshTimer = null;
  function refreshContent() {
    // Re-render the page's own data in place: fetch it again and swap #content.
    fetch(window.location.href, { headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content");
        const content = document.getElementById("content");
        if (!fresh || !content) return;
        content.querySelectorAll("div.figure").forEach(function (d) { if (window.Plotly) Plotly.purge(d); });
        content.innerHTML = fresh.innerHTML;
        drawFigures(content);
        enhanceTables(content);
      })
      .catch(function () { /* the next event tries again */ });
  }

  function showEvent(e) {
    const body = document.querySelector("#live-events tbody");
    const row = document.createElement("tr");
    row.className = "fresh";
    const link = document.createElement("a");
    link.href = "/ui/events/" + e.position;
    link.textContent = String(e.position);
    const first = document.createElement("td");
    first.className = "num";
    first.appendChild(link);
    row.appendChild(first);
    [e.type, e.stream, e.run_id || "–"].forEach(function (v) {
      const td = document.createElement("td");
      td.textContent = v; // text, never HTML: event fields are user data
      row.appendChild(td);
    });
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 50) body.deleteRow(body.rows.length - 1);
    document.getElementById("head-position").textContent = String(e.position);
    // At most one refresh a second however fast events arrive (a throttle,
    // not a debounce: a busy run must still refresh).
    if (refreshTimer === null) {
      refreshTimer = setTimeout(function () { refreshTimer = null; refreshContent(); }, 1000);
    }
  }

  let retryMs = 2000;
  function follow(from) {
    const state = document.getElementById("live-state");
    let next = from;
    fetch("/api/tail?from_position=" + from, { headers: { Accept: "text/event-stream" } })
      .then(function (response) {
        if (!response.ok || !response.body) throw new Error(String(response.status));
        state.textContent = "live: on";
        retryMs = 2000;
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        function pump() {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error("closed");
            buffer += decoder.decode(chunk.value, { stream: true });
            let cut;
            while ((cut = buffer.indexOf("\n\n")) >= 0) {
              const message = buffer.slice(0, cut);
              buffer = buffer.slice(cut + 2);
              const data = message.split("\n").filter(function (l) { return l.startsWith("data:"); })
                .map(function (l) { return l.slice(5).trimStart(); }).join("\n");
              if (!data) continue;
              const event = JSON.parse(data);
              next = event.position + 1;
              showEvent(event);
            }
            return pump();
          });
        }
        return pump();
      })
      .catch(function (why) {
        // Refused (a token needed, the server's tail cap) or dropped: back off, then resume
        // after the last event shown, so nothing is missed and nothing shown twice.
        state.textContent = "live: reconnecting (" + why.message + ")";
        setTimeout(function () { follow(next); }, retryMs);
        retryMs = Math.min(retryMs * 2, 60000);
      });
  }

  function start() {
    drawFigures(document);
    enhanceTables(document);
    const select = document.getElementById("run-select");
    if (select && !select.multiple) {
      select.addEventListener("change", function () { select.form.submit(); });
    }
    follow(Number(document.body.dataset.head || "0") + 1);
    window.labledgerReady = true;
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
