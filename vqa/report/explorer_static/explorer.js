/* Attention explorer: browse a run's questions, their candidates' attention maps and glimpses, compare two runs.
 *
 * Data arrive as scripts (file:// allows <script src>, not fetch): explorer/index.js calls VQAExplorer.index({...})
 * once; explorer/maps_NNN.js calls VQAExplorer.chunk(n, {...}) and is inserted only when a question of chunk n (or
 * its neighbour in the list) is shown. Every dataset string is inserted as text (textContent), never as HTML.
 *
 * Test hooks: VQAExplorer.state (qaId, candidate, glimpse: "mean" or a 0-based glimpse index, opacity, boxes),
 * VQAExplorer.requested (chunk numbers whose script was inserted, in order), body[data-ready="1"] once the first
 * question is drawn with its map, and on every view canvas data-drawn (a counter bumped by each redraw),
 * data-qa (the question drawn) and data-complete ("1" once image and map were both drawn).
 */
(function () {
  "use strict";

  var ROW_H = 54; // px per question row in the (virtual) list
  var MAX_W = 640; // longest displayed image width
  var MAX_H = 560;
  var IMAGE_CACHE = 48;

  var $ = function (id) { return document.getElementById(id); };
  var el = VQAMaps.el; // an element whose text is set as text, never parsed as HTML

  var state = { qaId: null, candidate: 0, glimpse: "mean", opacity: 0.7, boxes: true };
  var D = null; // the index payload
  var Q = []; // questions
  var byId = new Map(); // qa_id -> position in Q
  var hay = []; // lower-cased search text per question
  var filtered = []; // positions in Q
  var pos = -1; // position of the current question in `filtered` (-1: not in it)
  var chunks = new Map(); // chunk number -> {qa_id: maps}
  var requested = []; // chunk numbers whose script was inserted
  var failed = new Set();
  var images = new Map(); // src -> {img, status}
  var views = []; // per run: {canvas, label, info}
  var drawCount = 0;
  var pending = null; // requestAnimationFrame handle for the list
  var searchTimer = null;

  // ---------------------------------------------------------------- data loading
  function loadScript(src, onerror) {
    var s = document.createElement("script");
    s.src = src;
    s.async = true;
    s.onerror = onerror;
    document.head.appendChild(s);
  }

  function pad3(n) { // like Python's f"{n:03d}"
    var s = String(n);
    while (s.length < 3) s = "0" + s;
    return s;
  }

  function ensureChunk(n) {
    if (n === undefined || n === null || n < 0 || chunks.has(n) || requested.indexOf(n) >= 0) return;
    requested.push(n);
    loadScript("explorer/maps_" + pad3(n) + ".js", function () {
      failed.add(n);
      setStatus("attention maps of chunk " + n + " could not be loaded (explorer/maps_" + pad3(n) + ".js)");
      if (current() && current().chunk === n) redraw();
    });
  }

  function getImage(q) {
    var src = q.image;
    var entry = images.get(src);
    if (entry) {
      images.delete(src); // LRU: re-insert at the end
      images.set(src, entry);
      return entry;
    }
    var img = new Image();
    entry = { img: img, status: "loading" };
    img.onload = function () {
      entry.status = "ok";
      var c = current();
      if (c && c.image === src) redraw();
    };
    img.onerror = function () {
      entry.status = "error";
      var c = current();
      if (c && c.image === src) redraw();
    };
    img.src = src;
    images.set(src, entry);
    while (images.size > IMAGE_CACHE) images.delete(images.keys().next().value);
    return entry;
  }

  function index(payload) {
    D = payload || {};
    Q = D.questions || [];
    D.runs = D.runs && D.runs.length ? D.runs : [{ label: "run" }];
    D.grid = D.grid || [1, 1];
    D.glimpses = D.glimpses || 1;
    byId = new Map();
    hay = new Array(Q.length);
    for (var i = 0; i < Q.length; i++) {
      var q = Q[i];
      byId.set(String(q.qa_id), i);
      hay[i] = (String(q.question) + "\n" + (q.candidates || []).join("\n")).toLowerCase();
    }
    setupHeader();
    setupFilters();
    setupGlimpses();
    setupViews();
    applyFilters(true);
    var want = hashQuestion();
    if (want !== null && byId.has(want)) select(want);
    else if (filtered.length) select(String(Q[filtered[0]].qa_id));
    else {
      setStatus("no questions");
      document.body.dataset.ready = "1";
    }
  }

  function chunk(n, payload) {
    chunks.set(n, payload || {});
    var c = current();
    if (c && c.chunk === n) redraw();
  }

  // ---------------------------------------------------------------- header, filters, list
  function setupHeader() {
    if (D.title) {
      $("title").textContent = D.title;
      document.title = D.title + " · attention explorer";
    }
    $("summary").textContent = D.summary || "";
    var head = $("runs-head");
    head.textContent = "";
    D.runs.forEach(function (r, i) {
      var chip = el("span", "run-chip run" + i);
      chip.appendChild(el("b", null, r.label || "run " + (i + 1)));
      var bits = [];
      if (r.variant) bits.push(r.variant);
      if (typeof r.accuracy === "number") bits.push("accuracy " + (100 * r.accuracy).toFixed(1) + "%");
      if (bits.length) chip.appendChild(el("span", null, " " + bits.join(" · ")));
      if (r.checkpoint) chip.title = String(r.checkpoint);
      head.appendChild(chip);
    });
  }

  function fillSelect(sel, key) {
    var counts = new Map();
    Q.forEach(function (q) {
      var v = String(q[key] === undefined || q[key] === null ? "" : q[key]);
      counts.set(v, (counts.get(v) || 0) + 1);
    });
    Array.from(counts.keys()).sort().forEach(function (v) {
      var o = el("option", null, (v || "(none)") + " (" + counts.get(v) + ")");
      o.value = v;
      sel.appendChild(o);
    });
  }

  function setupFilters() {
    fillSelect($("f-type"), "type");
    fillSelect($("f-family"), "family");
    if (D.runs.length === 2) {
      var sel = $("f-result");
      [["disagree", "runs disagree"], ["gain", "only " + label(1) + " correct"], ["loss", "only " + label(0) + " correct"]]
        .forEach(function (p) {
          var o = el("option", null, p[1]);
          o.value = p[0];
          sel.appendChild(o);
        });
      sel.options[1].textContent = "correct (" + label(0) + ")";
      sel.options[2].textContent = "wrong (" + label(0) + ")";
    }
    ["f-type", "f-family", "f-result"].forEach(function (id) {
      $(id).addEventListener("change", function (e) {
        applyFilters(false);
        e.target.blur();
      });
    });
    var search = $("f-search");
    search.addEventListener("input", function () {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () { applyFilters(false); }, 60);
    });
    search.addEventListener("keydown", function (e) {
      if (e.key === "Escape" || e.key === "Enter") {
        clearTimeout(searchTimer);
        applyFilters(false);
        search.blur();
      }
    });
    var list = $("list");
    list.addEventListener("scroll", scheduleList);
    window.addEventListener("resize", function () {
      scheduleList();
      redraw();
    });
    $("list-inner").addEventListener("click", function (e) {
      var row = e.target.closest ? e.target.closest(".row") : null;
      if (row && row.dataset.qa !== undefined) select(row.dataset.qa);
    });
  }

  function label(r) { return (D.runs[r] && D.runs[r].label) || "run " + (r + 1); }

  function runCorrect(q, r) {
    var run = q.runs && q.runs[r];
    return run ? !!run.correct : null;
  }

  function applyFilters(initial) {
    var type = $("f-type").value;
    var family = $("f-family").value;
    var result = $("f-result").value;
    var terms = $("f-search").value.toLowerCase().split(/\s+/).filter(Boolean);
    var raw = $("f-search").value.trim();
    var out = [];
    for (var i = 0; i < Q.length; i++) {
      var q = Q[i];
      if (type && String(q.type) !== type) continue;
      if (family && String(q.family) !== family) continue;
      if (result) {
        var a = runCorrect(q, 0);
        var b = runCorrect(q, 1);
        if (result === "correct" && a !== true) continue;
        if (result === "wrong" && a !== false) continue;
        if (result === "disagree" && a === b) continue;
        if (result === "gain" && !(a === false && b === true)) continue;
        if (result === "loss" && !(a === true && b === false)) continue;
      }
      if (terms.length) {
        var h = hay[i];
        var ok = raw === String(q.qa_id);
        if (!ok) {
          ok = true;
          for (var t = 0; t < terms.length; t++) {
            if (h.indexOf(terms[t]) < 0) { ok = false; break; }
          }
        }
        if (!ok) continue;
      }
      out.push(i);
    }
    filtered = out;
    $("count").textContent = filtered.length + " of " + Q.length + " shown";
    $("list-inner").style.height = filtered.length * ROW_H + "px";
    locate();
    if (!initial) {
      if (pos < 0 && filtered.length) select(String(Q[filtered[0]].qa_id));
      else {
        $("list").scrollTop = Math.max(0, pos * ROW_H - 2 * ROW_H);
        renderList();
        updatePosition();
      }
    } else renderList();
  }

  function locate() {
    pos = -1;
    if (state.qaId === null) return;
    var i = byId.get(String(state.qaId));
    // filtered is sorted by position in Q: binary search
    var lo = 0, hi = filtered.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (filtered[mid] === i) { pos = mid; return; }
      if (filtered[mid] < i) lo = mid + 1; else hi = mid - 1;
    }
  }

  function scheduleList() {
    if (pending !== null) return;
    pending = requestAnimationFrame(function () {
      pending = null;
      renderList();
    });
  }

  function renderList() {
    var list = $("list");
    var inner = $("list-inner");
    var top = list.scrollTop;
    var first = Math.max(0, Math.floor(top / ROW_H) - 5);
    var last = Math.min(filtered.length, Math.ceil((top + (list.clientHeight || 600)) / ROW_H) + 5);
    var frag = document.createDocumentFragment();
    for (var p = first; p < last; p++) {
      var q = Q[filtered[p]];
      var row = el("div", "row" + (p === pos ? " selected" : ""));
      row.setAttribute("role", "option");
      row.setAttribute("aria-selected", p === pos ? "true" : "false");
      row.style.top = p * ROW_H + "px";
      row.style.height = ROW_H + "px";
      row.dataset.qa = String(q.qa_id);
      var line = el("div", "row-meta");
      (q.runs || []).forEach(function (run) {
        line.appendChild(el("span", "mark " + (run.correct ? "ok" : "bad"), run.correct ? "✓" : "✗"));
      });
      line.appendChild(el("span", "row-type", q.type));
      if (q.family) line.appendChild(el("span", "row-family", q.family));
      line.appendChild(el("span", "row-id", "#" + q.qa_id));
      row.appendChild(line);
      row.appendChild(el("div", "row-text", q.question));
      frag.appendChild(row);
    }
    inner.textContent = "";
    inner.appendChild(frag);
  }

  function scrollToCurrent() {
    if (pos < 0) return;
    var list = $("list");
    var h = list.clientHeight || 600;
    if (pos * ROW_H < list.scrollTop) list.scrollTop = pos * ROW_H;
    else if ((pos + 1) * ROW_H > list.scrollTop + h) list.scrollTop = (pos + 1) * ROW_H - h;
  }

  // ---------------------------------------------------------------- selection
  function current() {
    if (state.qaId === null) return null;
    var i = byId.get(String(state.qaId));
    return i === undefined ? null : Q[i];
  }

  function select(qaId) {
    qaId = String(qaId);
    if (!byId.has(qaId)) return;
    var q = Q[byId.get(qaId)];
    var changed = state.qaId === null || String(state.qaId) !== qaId;
    state.qaId = q.qa_id;
    if (changed) state.candidate = defaultCandidate(q);
    locate();
    ensureChunk(q.chunk);
    prefetch();
    try {
      history.replaceState(null, "", "#q=" + encodeURIComponent(qaId));
    } catch (e) { /* some file:// setups refuse; the hash is a convenience */ }
    showQuestion(q);
    scrollToCurrent();
    renderList();
    redraw();
  }

  function defaultCandidate(q) {
    // the true answer when known, else the candidate run 0 chose
    if (typeof q.answer_index === "number" && q.answer_index >= 0) return q.answer_index;
    if (q.runs && q.runs[0] && typeof q.runs[0].chosen === "number") return q.runs[0].chosen;
    return 0;
  }

  function prefetch() {
    // the neighbours in the list: their map chunk (only when it differs) and their image
    [pos - 1, pos + 1].forEach(function (p) {
      if (p < 0 || p >= filtered.length) return;
      var n = Q[filtered[p]];
      ensureChunk(n.chunk);
      getImage(n);
    });
  }

  function move(step) {
    if (!filtered.length) return;
    var p = pos < 0 ? 0 : Math.min(filtered.length - 1, Math.max(0, pos + step));
    if (p === pos) return;
    select(String(Q[filtered[p]].qa_id));
  }

  function generated(q) {
    // a decoder run's own answers (beam search): shown after the candidates, as candidates K, K+1, ... of run 0
    var run = q && q.runs && q.runs[0];
    return (run && run.generated) || [];
  }

  function choiceCount(q) { return (q.candidates || []).length + generated(q).length; }

  function setCandidate(k) {
    var q = current();
    if (!q || k < 0 || k >= choiceCount(q)) return;
    state.candidate = k;
    var words = stepWords(q, k);
    if (words && state.glimpse !== "mean" && state.glimpse >= words.length) state.glimpse = "mean";
    $("glimpse").value = String(state.glimpse);
    showCandidates(q);
    redraw();
  }

  function setGlimpse(g) {
    state.glimpse = g === "mean" ? "mean" : Math.max(0, Math.min(D.glimpses - 1, Number(g)));
    $("glimpse").value = String(state.glimpse);
    redraw();
  }

  function hashQuestion() {
    var m = /(?:^#|&)q=([^&]+)/.exec(location.hash || "");
    return m ? decodeURIComponent(m[1]) : null;
  }

  function updatePosition() {
    var text = pos >= 0 ? "question " + (pos + 1) + " of " + filtered.length + " shown" : "not in the filtered list";
    $("q-pos").textContent = text + "  ·  ← / → to move";
  }

  function candidateName(q, k) {
    var K = (q.candidates || []).length;
    if (k >= K) return "written: " + String((generated(q)[k - K] || {}).answer);
    var c = String((q.candidates || [])[k]);
    return q.candidate_boxes ? "box " + c : c;
  }

  function showQuestion(q) {
    updatePosition();
    $("q-text").textContent = q.question;
    var meta = $("q-meta");
    meta.textContent = "";
    [["type", q.type], ["family", q.family], ["qa_id", q.qa_id], ["image", q.image_id]].forEach(function (p) {
      if (p[1] === undefined || p[1] === null || p[1] === "") return;
      var s = el("span", "tag");
      s.appendChild(el("span", "tag-k", p[0]));
      s.appendChild(document.createTextNode(" " + p[1]));
      meta.appendChild(s);
    });
    (q.runs || []).forEach(function (run, r) {
      var s = el("span", "tag verdict " + (run.correct ? "ok" : "bad"));
      var who = D.runs.length > 1 ? label(r) + ": " : "";
      s.textContent = who + (run.correct ? "✓ correct" : "✗ wrong") + " — chose " + candidateName(q, run.chosen);
      meta.appendChild(s);
    });
    $("kmax").textContent = String(Math.min(9, choiceCount(q)));
    showCandidates(q);
  }

  function stepWords(q, k) {
    // the decoder's steps of candidate k (its words, then the end), or null for a run whose maps are glimpses
    var run = q && q.runs && q.runs[0];
    return run && run.words ? run.words[k] || null : null;
  }

  function stepName(q, k, g) {
    var words = stepWords(q, k);
    if (g === "mean") return words ? "mean of the answer's words" : "mean of glimpses";
    if (!words) return "glimpse " + (g + 1);
    return g < words.length ? "word " + (g + 1) + ": “" + words[g] + "”" : "past the end (the words' mean)";
  }

  function labelGlimpses(q) {
    // the decoder: one map per word of the selected candidate, named by its word
    var sel = $("glimpse");
    var words = stepWords(q, state.candidate);
    $("glimpse-label").textContent = words ? "Word" : "Glimpse";
    for (var i = 0; i < sel.options.length; i++) {
      var o = sel.options[i];
      o.textContent = o.value === "mean" ? (words ? "mean of " + words.length + " words" : o.dataset.plain)
        : stepName(q, state.candidate, Number(o.value));
      o.hidden = !!words && o.value !== "mean" && Number(o.value) >= words.length;
    }
  }

  function choiceButton(k, cls, text, isAnswer) {
    // a card that selects choice k (a candidate, or one of the decoder's own answers): its key, text and ✓
    var b = el("button", cls + (k === state.candidate ? " selected" : "") + (isAnswer ? " answer" : ""));
    b.type = "button";
    b.dataset.k = String(k);
    b.setAttribute("role", "radio");
    b.setAttribute("aria-checked", k === state.candidate ? "true" : "false");
    var head = el("div", "cand-head");
    head.appendChild(el("span", "key", k + 1));
    head.appendChild(el("span", "cand-text", text));
    if (isAnswer) head.appendChild(el("span", "truth", "✓ answer"));
    b.appendChild(head);
    b.addEventListener("click", onCandidateClick);
    return b;
  }

  function probLine(r, p) {
    // a probability bar of run r (p: 0..1, or null when the run has none)
    var line = el("div", "prob run" + r);
    if (D.runs.length > 1) {
      var lab = el("span", "prob-label", label(r));
      lab.title = label(r);
      line.appendChild(lab);
    }
    var bar = el("span", "bar");
    var fill = el("span", "fill");
    fill.style.width = (p === null ? 0 : Math.max(0, Math.min(1, p)) * 100).toFixed(1) + "%";
    bar.appendChild(fill);
    line.appendChild(bar);
    line.appendChild(el("span", "pct", p === null ? "–" : (100 * p).toFixed(1) + "%"));
    return line;
  }

  function showCandidates(q) {
    labelGlimpses(q);
    var box = $("candidates");
    box.textContent = "";
    var K = (q.candidates || []).length;
    for (var k = 0; k < K; k++) {
      var b = choiceButton(k, "cand", candidateName(q, k), k === q.answer_index);
      (q.runs || []).forEach(function (run, r) {
        var line = probLine(r, run.probs && typeof run.probs[k] === "number" ? run.probs[k] : null);
        if (run.chosen === k) {
          var mark = el("span", "chosen " + (run.correct ? "ok" : "bad"), D.runs.length > 1 ? "●" : "● chosen");
          mark.title = "chosen by " + label(r);
          line.appendChild(mark);
        }
        b.appendChild(line);
      });
      box.appendChild(b);
    }
    showGenerated(q, K);
  }

  function showGenerated(q, K) {
    // the decoder's own answers, best first, with the probability of writing each (not a share among them)
    var gens = generated(q);
    var box = $("generated");
    box.textContent = "";
    $("generated-box").hidden = !gens.length;
    gens.forEach(function (g, j) {
      var b = choiceButton(K + j, "cand gen", g.answer, !!g.correct);
      b.appendChild(probLine(0, Number(g.p)));
      box.appendChild(b);
    });
  }

  function onCandidateClick(e) {
    setCandidate(Number(e.currentTarget.dataset.k));
    e.currentTarget.blur();
  }

  // ---------------------------------------------------------------- controls
  function setupGlimpses() {
    var sel = $("glimpse");
    sel.textContent = "";
    var o = el("option", null, D.glimpses > 1 ? "mean of " + D.glimpses + " glimpses" : "mean (1 glimpse)");
    o.value = "mean";
    o.dataset.plain = o.textContent;
    sel.appendChild(o);
    for (var g = 0; g < D.glimpses; g++) {
      o = el("option", null, "glimpse " + (g + 1));
      o.value = String(g);
      sel.appendChild(o);
    }
    sel.value = "mean";
  }

  function setupControls() {
    var op = $("opacity");
    state.opacity = Number(op.value);
    $("opacity-val").textContent = state.opacity.toFixed(2);
    op.addEventListener("input", function () {
      state.opacity = Number(op.value);
      $("opacity-val").textContent = state.opacity.toFixed(2);
      redraw();
    });
    $("glimpse").addEventListener("change", function (e) {
      setGlimpse(e.target.value);
      e.target.blur();
    });
    var boxes = $("boxes");
    state.boxes = boxes.checked;
    boxes.addEventListener("change", function () {
      state.boxes = boxes.checked;
      boxes.blur();
      redraw();
    });
    document.addEventListener("keydown", onKey);
  }

  function onKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    var t = e.target;
    var tag = t && t.tagName;
    if (tag === "SELECT" || tag === "TEXTAREA" || (tag === "INPUT" && t.type !== "checkbox")) return;
    if (e.key === "ArrowRight" || e.key === "ArrowDown") { move(1); e.preventDefault(); }
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") { move(-1); e.preventDefault(); }
    else if (/^[1-9]$/.test(e.key)) setCandidate(Number(e.key) - 1);
    else if (e.key === "g" && D) {
      var g = state.glimpse === "mean" ? 0 : state.glimpse + 1;
      setGlimpse(g >= D.glimpses ? "mean" : g);
    } else if (e.key === "b") {
      $("boxes").checked = !$("boxes").checked;
      state.boxes = $("boxes").checked;
      redraw();
    }
  }

  function setStatus(text) { $("status").textContent = text || ""; }

  // ---------------------------------------------------------------- drawing
  function setupViews() {
    var box = $("views");
    box.textContent = "";
    box.classList.toggle("compare", D.runs.length > 1);
    views = D.runs.map(function (r, i) {
      var fig = el("figure", "view run" + i);
      var cap = el("figcaption", "view-label", label(i));
      var canvas = el("canvas", "view-canvas" + (i === 0 ? " main" : ""));
      canvas.id = i === 0 ? "canvas" : "canvas" + i;
      canvas.dataset.drawn = "0";
      canvas.dataset.run = String(i);
      var info = el("div", "view-info");
      fig.appendChild(cap);
      fig.appendChild(canvas);
      fig.appendChild(info);
      box.appendChild(fig);
      return { canvas: canvas, label: cap, info: info };
    });
  }

  function mapFor(maps, run, k, glimpse, n) {
    // -> {values, max} of the shown map (a glimpse, or the mean of the glimpses), or null
    return VQAMaps.combine(maps && maps[run] && maps[run][k], glimpse, n);
  }

  function displaySize(q, entry) {
    var W = Number(q.width) || (entry.status === "ok" ? entry.img.naturalWidth : 0) || 4;
    var H = Number(q.height) || (entry.status === "ok" ? entry.img.naturalHeight : 0) || 3;
    var avail = $("stage").clientWidth || MAX_W;
    var per = views.length > 1 ? (avail - 24 * (views.length - 1)) / views.length : avail;
    var maxW = Math.max(160, Math.min(MAX_W, per));
    var s = Math.min(maxW / W, MAX_H / H);
    return { w: Math.max(1, Math.round(W * s)), h: Math.max(1, Math.round(H * s)), W: W, H: H };
  }

  function strokeBox(ctx, b, sx, sy, style, width, dash) {
    if (!b || b.length < 4) return;
    ctx.save();
    ctx.lineWidth = width;
    ctx.setLineDash(dash || []);
    ctx.strokeStyle = "rgba(0,0,0,0.55)"; // a dark halo keeps the box visible on light images
    ctx.lineWidth = width + 2;
    ctx.strokeRect(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy);
    ctx.strokeStyle = style;
    ctx.lineWidth = width;
    ctx.strokeRect(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy);
    ctx.restore();
  }

  function redraw() {
    var q = current();
    if (!q || !D) return;
    var entry = getImage(q);
    var size = displaySize(q, entry);
    var loaded = chunks.get(q.chunk);
    var maps = loaded ? loaded[String(q.qa_id)] : undefined;
    var chunkFailed = failed.has(q.chunk);
    var imageDone = entry.status !== "loading";
    var mapsDone = maps !== undefined || (loaded !== undefined) || chunkFailed;
    if (!loaded && !chunkFailed) setStatus("loading attention maps…");
    else if (loaded && maps === undefined) setStatus("no attention maps stored for this question");
    else if (!chunkFailed) setStatus(entry.status === "error" ? "image could not be loaded: " + q.image : "");
    var k = state.candidate;
    var sx = size.w / size.W, sy = size.h / size.H;
    views.forEach(function (v, r) {
      var c = v.canvas;
      var ctx = VQAMaps.sizeCanvas(c, size.w, size.h);
      ctx.clearRect(0, 0, size.w, size.h);
      if (entry.status === "ok") {
        ctx.imageSmoothingEnabled = true;
        ctx.imageSmoothingQuality = "high";
        ctx.drawImage(entry.img, 0, 0, size.w, size.h);
      } else {
        ctx.fillStyle = "#3a3f47";
        ctx.fillRect(0, 0, size.w, size.h);
      }
      var grid = (D.runs[r] && D.runs[r].grid) || D.grid; // two runs may use different feature grids
      var h = grid[0], w = grid[1];
      var m = maps ? mapFor(maps, r, k, state.glimpse, h * w) : null;
      if (m && state.opacity > 0) {
        ctx.imageSmoothingEnabled = true;
        ctx.imageSmoothingQuality = "high";
        ctx.drawImage(VQAMaps.overlay(m.values, m.max, h, w, state.opacity), 0, 0, size.w, size.h);
      }
      if (state.boxes) (q.grounding || []).forEach(function (b) { strokeBox(ctx, b, sx, sy, "#ffffff", 2, [6, 4]); });
      if (q.candidate_boxes) {
        q.candidate_boxes.forEach(function (b, j) {
          if (j !== k) strokeBox(ctx, b, sx, sy, "rgba(255,170,60,0.45)", 1, [2, 3]);
        });
        strokeBox(ctx, q.candidate_boxes[k], sx, sy, "#ff8c1a", 3, []);
      }
      info(v, q, r, m, h * w);
      c.dataset.qa = String(q.qa_id);
      c.dataset.complete = imageDone && mapsDone ? "1" : "0";
      drawCount += 1;
      c.dataset.drawn = String(drawCount);
    });
    if (imageDone && mapsDone && document.body.dataset.ready !== "1") document.body.dataset.ready = "1";
  }

  function info(v, q, r, m, n) {
    v.info.textContent = "";
    var run = q.runs && q.runs[r];
    var k = state.candidate;
    var line = el("div", "info-line");
    line.appendChild(el("span", "info-cand", candidateName(q, k)));
    var K = (q.candidates || []).length;
    var p = k < K ? run && run.probs && run.probs[k] : r === 0 && generated(q)[k - K] ? generated(q)[k - K].p : null;
    if (typeof p === "number") line.appendChild(el("span", "info-p", ": p = " + (100 * p).toFixed(1) + "%"));
    if (run && typeof run.chosen === "number") {
      line.appendChild(document.createTextNode(" · "));
      line.appendChild(el("span", "info-chose " + (run.correct ? "ok" : "bad"),
        "chose " + candidateName(q, run.chosen) + (run.correct ? " ✓" : " ✗")));
    }
    v.info.appendChild(line);
    var g = stepName(q, k, state.glimpse);
    var text = m ? g + " · brightest cell holds " + (100 * m.max).toFixed(1) + "% (uniform " +
      (100 / n).toFixed(1) + "%)" : g + " · no map";
    v.info.appendChild(el("div", "info-map", text));
  }

  // ---------------------------------------------------------------- start
  window.VQAExplorer = {
    index: index,
    chunk: chunk,
    state: state,
    requested: requested,
    select: select,
    setCandidate: setCandidate,
    setGlimpse: setGlimpse,
    filteredIds: function () { return filtered.map(function (i) { return Q[i].qa_id; }); },
  };
  VQAMaps.drawLegendBar($("legend-bar"));
  setupControls();
  loadScript("explorer/index.js", function () {
    $("count").textContent = "explorer/index.js could not be loaded";
    setStatus("explorer/index.js could not be loaded");
  });
})();
