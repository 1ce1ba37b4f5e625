"""The live page: one self-contained HTML document (inline CSS and script, no CDN), which
polls ``/api/status`` and ``/api/events`` and refreshes each source's frame."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edgecnn live</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
header{padding:10px 16px;background:#222;display:flex;justify-content:space-between}
main{display:flex;flex-wrap:wrap;gap:16px;padding:16px}
.src{background:#1b1b1b;border:1px solid #333;border-radius:6px;padding:12px;width:440px}
.src h2{margin:0 0 6px;font-size:18px}
.up{color:#5c5}.down{color:#e55}
img.frame{width:416px;min-height:120px;background:#000;display:block;margin:6px 0}
table{border-collapse:collapse;width:100%;font-size:13px}
td,th{padding:2px 6px;border-bottom:1px solid #2a2a2a;text-align:left}
.events{max-height:260px;overflow:auto}
.fault{color:#fa0}
img.thumb{height:28px;vertical-align:middle}
</style></head>
<body>
<header><b>edgecnn live view</b><span id="clock"></span></header>
<main id="sources"></main>
<script>
const token = new URLSearchParams(location.search).get("token");
const q = token ? ("token=" + encodeURIComponent(token)) : "";
const withToken = (url) => q ? url + (url.includes("?") ? "&" : "?") + q : url;
let since = null;   // the first look asks for the newest, later ones page forward
let run = null;     // the run those seqs belong to (a restart begins them again)
const events = [];
const ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"};
function esc(s){ return String(s).replace(/[&<>"]/g, c => ENTITIES[c]); }
function card(s){
  let el = document.getElementById("src-" + s.source);
  if(!el){
    el = document.createElement("section"); el.className = "src"; el.id = "src-" + s.source;
    el.innerHTML = '<h2></h2><div class="health"></div>' +
      '<img class="frame" alt="live frame of ' + esc(s.source) + '">' +
      '<div class="rates"></div><table class="counts"></table>' +
      '<h3>last events</h3><div class="events"><table class="log"></table></div>';
    document.getElementById("sources").appendChild(el);
    const img = el.querySelector("img.frame");
    const refresh = () => { img.src = withToken("/frame/" + encodeURIComponent(s.source) +
                                                ".jpg?t=" + Date.now()); };
    img.onload = () => { img.dataset.loaded = "1"; setTimeout(refresh, 200); };
    img.onerror = () => setTimeout(refresh, 1000);
    refresh();
  }
  return el;
}
function render(status){
  for(const s of status.sources){
    const el = card(s);
    el.querySelector("h2").textContent = s.source + " (" + s.kind + ")";
    const h = el.querySelector(".health");
    h.className = "health " + (s.up ? "up" : "down");
    h.textContent = (s.up ? "up" : "DOWN") + " - " + s.health +
      (s.active_faults.length ? " - faults: " + s.active_faults.join(", ") : "");
    const ms = (v) => v === null || v === undefined ? "-" : Number(v).toFixed(2) + " ms";
    el.querySelector(".rates").textContent = s.processed + " " + s.unit + " classified, " +
      Number(s.rate_per_s).toFixed(1) + "/s, latency p50 " + ms(s.latency_p50_ms) +
      ", p99 " + ms(s.latency_p99_ms) + ", inference p50 " + ms(s.inference_p50_ms);
    let rows = "<tr><th>class</th><th>last hour</th><th>since start</th></tr>";
    for(const c of s.labels){
      rows += "<tr><td>" + esc(c) + "</td><td>" + (s.events_last_hour[c] || 0) +
              "</td><td>" + (s.events[c] || 0) + "</td></tr>";
    }
    for(const [f, n] of Object.entries(s.faults)){
      rows += '<tr class="fault"><td>fault ' + esc(f) + "</td><td></td><td>" + n + "</td></tr>";
    }
    el.querySelector("table.counts").innerHTML = rows;
    const mine = events.filter(e => e.source === s.source).slice(-15).reverse();
    el.querySelector("table.log").innerHTML = mine.map(e =>
      "<tr" + (e.type === "fault" ? ' class="fault"' : "") + "><td>" + esc(e.time.slice(11, 23)) +
      "</td><td>" + esc(e.type === "fault" ? "FAULT " + e.fault : e["class"]) + "</td><td>" +
      (e.confidence !== undefined ? e.confidence.toFixed(3) : "") + "</td><td>" +
      (e.snapshot ? '<img class="thumb" src="' + withToken("/snapshot/" + e.seq) + '">' : "") +
      "</td></tr>").join("");
  }
}
async function poll(){
  try{
    const ev = await (await fetch(withToken("/api/events" +
                                            (since === null ? "" : "?since=" + since)))).json();
    if(run !== null && ev.run !== run){   // the service restarted: its seqs begin again
      run = ev.run; since = null; events.length = 0; poll(); return;
    }
    run = ev.run;
    for(const e of ev.events){ events.push(e); since = Math.max(since ?? 0, e.seq); }
    if(since === null) since = 0;
    if(events.length > 500) events.splice(0, events.length - 500);
    render(await (await fetch(withToken("/api/status"))).json());
    document.getElementById("clock").textContent = new Date().toLocaleTimeString();
  }catch(err){ document.getElementById("clock").textContent = "connection lost"; }
  setTimeout(poll, 1000);
}
poll();
</script>
</body></html>
"""
