/* The live page (`make serve`): pick an image, ask, see each candidate's attention drawn as the explorer draws it.
 *
 * The image is drawn from the person's own copy (an object URL of the dropped file, or a sample's URL): the server
 * never sends an upload back. Every string from the server or the user is inserted as text (textContent).
 *
 * Test hooks: VQAServe.state (selected: a candidate index, or K + j for the decoder's j-th own answer; glimpse;
 * opacity; boxes), body[data-ready="1"] once the run's info is loaded, canvas data-drawn (a counter bumped by each
 * redraw) and data-result (a counter bumped by each answer received).
 */
(function () {
  "use strict";

  var MAX_W = 640, MAX_H = 560;
  var $ = function (id) { return document.getElementById(id); };
  var el = VQAMaps.el; // an element whose text is set as text, never parsed as HTML

  var info = null; // /api/info
  var state = { selected: 0, glimpse: "mean", opacity: 0.7, boxes: [] };
  var image = { img: null, file: null, sample: null, url: null, width: 0, height: 0 };
  var result = null;
  var drawn = 0, results = 0;
  var drag = null; // pointing: the box being drawn, in image pixels

  // ---------------------------------------------------------------- image
  function useFile(file) {
    if (!file) return;
    if (image.url && image.file) URL.revokeObjectURL(image.url);
    loadImage(URL.createObjectURL(file), file, null);
  }

  function useSample(id, url) {
    if (image.url && image.file) URL.revokeObjectURL(image.url);
    loadImage(url, null, id);
  }

  function loadImage(url, file, sample) {
    var img = new Image();
    img.onload = function () {
      image = { img: img, file: file, sample: sample, url: url, width: img.naturalWidth, height: img.naturalHeight };
      state.boxes = [];
      clearResult();
      message("", true);
      showBoxes();
      markSample();
      draw();
    };
    img.onerror = function () {
      // the server checks the file too; a browser that cannot show it still lets the server say why
      image = { img: null, file: file, sample: sample, url: url, width: 0, height: 0 };
      clearResult();
      markSample();
      draw();
      message("this browser cannot show that file as an image", false);
    };
    img.src = url;
  }

  function markSample() {
    Array.prototype.forEach.call($("samples").children, function (t) {
      t.classList.toggle("selected", image.sample !== null && t.dataset.id === String(image.sample));
    });
  }

  // ---------------------------------------------------------------- drawing
  function size() {
    var W = image.width || 4, H = image.height || 3;
    var s = Math.min(MAX_W / W, MAX_H / H);
    return { w: Math.max(1, Math.round(W * s)), h: Math.max(1, Math.round(H * s)), s: s };
  }

  function shownMaps() {
    // the selected answer's maps: [G] (glimpses, or a decoder's words)
    if (!result) return null;
    var K = result.choices.length;
    if (state.selected < K) return result.maps[state.selected];
    var g = result.generated[state.selected - K];
    return g ? g.maps : null;
  }

  function draw() {
    var c = $("canvas");
    var sz = size();
    var ctx = VQAMaps.sizeCanvas(c, sz.w, sz.h);
    ctx.fillStyle = "#3a3f47";
    ctx.fillRect(0, 0, sz.w, sz.h);
    if (image.img) {
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(image.img, 0, 0, sz.w, sz.h);
    }
    var grid = info ? info.grid : [1, 1];
    var m = VQAMaps.combine(shownMaps(), state.glimpse, grid[0] * grid[1]);
    if (m && image.img && state.opacity > 0) {
      ctx.drawImage(VQAMaps.overlay(m.values, m.max, grid[0], grid[1], state.opacity), 0, 0, sz.w, sz.h);
    }
    var boxes = drag ? state.boxes.concat([drag]) : state.boxes;
    boxes.forEach(function (b, i) {
      var sel = result && i === state.selected;
      ctx.lineWidth = sel ? 4 : 2;
      ctx.strokeStyle = "rgba(0,0,0,0.6)";
      ctx.strokeRect(b[0] * sz.s, b[1] * sz.s, b[2] * sz.s, b[3] * sz.s);
      ctx.lineWidth = sel ? 3 : 1.5;
      ctx.strokeStyle = sel ? "#ff8c1a" : "rgba(255,200,120,0.9)";
      ctx.strokeRect(b[0] * sz.s, b[1] * sz.s, b[2] * sz.s, b[3] * sz.s);
      ctx.fillStyle = "#ff8c1a";
      ctx.font = "bold 13px system-ui, sans-serif";
      ctx.fillText(String(i + 1), b[0] * sz.s + 4, b[1] * sz.s + 14);
    });
    $("map-info").textContent = m ? stepName() + " · brightest cell holds " + (100 * m.max).toFixed(1) +
      "% (uniform " + (100 / (grid[0] * grid[1])).toFixed(1) + "%)" : "";
    drawn += 1;
    c.dataset.drawn = String(drawn);
  }

  // ---------------------------------------------------------------- pointing: boxes drawn with the mouse
  function imagePoint(e) {
    var r = $("canvas").getBoundingClientRect();
    var s = size().s;
    var x = Math.max(0, Math.min(image.width, (e.clientX - r.left) / s));
    var y = Math.max(0, Math.min(image.height, (e.clientY - r.top) / s));
    return [x, y];
  }

  function setupBoxes() {
    var c = $("canvas");
    c.classList.add("drawing");
    c.addEventListener("mousedown", function (e) {
      if (!image.img) return;
      if (state.boxes.length >= info.max_choices) {
        message("at most " + info.max_choices + " boxes: clear them to draw new ones", false);
        return;
      }
      var p = imagePoint(e);
      drag = [p[0], p[1], 0, 0];
      drag.origin = p;
      e.preventDefault();
    });
    window.addEventListener("mousemove", function (e) {
      if (!drag) return;
      var p = imagePoint(e), o = drag.origin;
      drag = [Math.min(o[0], p[0]), Math.min(o[1], p[1]), Math.abs(p[0] - o[0]), Math.abs(p[1] - o[1])];
      drag.origin = o;
      draw();
    });
    window.addEventListener("mouseup", function () {
      if (!drag) return;
      var b = [drag[0], drag[1], drag[2], drag[3]].map(function (v) { return Math.round(v); });
      drag = null;
      if (b[2] >= 2 && b[3] >= 2) state.boxes.push(b);
      boxesChanged();
    });
    $("clear-boxes").addEventListener("click", function () {
      state.boxes = [];
      boxesChanged();
    });
  }

  function boxesChanged() {
    clearResult(); // an answer is about the boxes it was given
    showBoxes();
    draw();
  }

  function showBoxes() {
    var list = $("box-list");
    list.textContent = "";
    state.boxes.forEach(function (b) {
      list.appendChild(el("li", null, "x " + b[0] + ", y " + b[1] + ", " + b[2] + " × " + b[3] + " px"));
    });
  }

  // ---------------------------------------------------------------- asking
  function message(text, ok) {
    var m = $("message");
    m.textContent = text || "";
    m.className = ok ? "ok" : "";
  }

  function ask(e) {
    e.preventDefault();
    var form = new FormData();
    if (image.file) form.append("image", image.file, "upload");
    else if (image.sample !== null) form.append("sample", String(image.sample));
    form.append("question", $("question").value);
    if (info.task === "pointing") {
      state.boxes.forEach(function (b) { form.append("choice", b.join(",")); });
    } else {
      Array.prototype.forEach.call(document.querySelectorAll(".choice"), function (i) { form.append("choice", i.value); });
    }
    $("ask").disabled = true;
    message("asking…", true);
    fetch("api/ask", { method: "POST", body: form })
      .then(function (r) {
        return r.json().catch(function () { return { error: "the server sent no answer (HTTP " + r.status + ")" }; });
      })
      .then(function (data) {
        $("ask").disabled = false;
        if (data.error) {
          clearResult();
          message(data.error, false);
        } else {
          showResult(data);
          message("answered in " + Number(data.seconds).toFixed(2) + " s", true);
        }
        results += 1;
        $("canvas").dataset.result = String(results);
      })
      .catch(function () {
        $("ask").disabled = false;
        message("the server cannot be reached: is `make serve` still running?", false);
        results += 1;
        $("canvas").dataset.result = String(results);
      });
  }

  function clearResult() {
    result = null;
    $("results").hidden = true;
  }

  function choiceName(k) {
    var c = result.choices[k];
    return typeof c === "string" ? c : "box " + (k + 1);
  }

  function stepWords() {
    if (!result) return null;
    var K = result.choices.length;
    if (state.selected < K) return result.words ? result.words[state.selected] : null;
    var g = result.generated[state.selected - K];
    return g ? g.words : null;
  }

  function stepName() {
    var words = stepWords(), g = state.glimpse;
    if (g === "mean") return words ? "mean of the answer's words" : "mean of glimpses";
    if (!words) return "glimpse " + (g + 1);
    return g < words.length ? "word " + (g + 1) + ": “" + words[g] + "”" : "past the end (the words' mean)";
  }

  function card(k, text, p, chosen, rank) {
    var b = el("button", "cand" + (k === state.selected ? " selected" : ""));
    b.type = "button";
    b.dataset.k = String(k);
    b.setAttribute("role", "radio");
    b.setAttribute("aria-checked", k === state.selected ? "true" : "false");
    var head = el("div", "cand-head");
    head.appendChild(el("span", "rank", rank));
    head.appendChild(el("span", "cand-text", text));
    if (chosen) head.appendChild(el("span", "chosen", "● chosen"));
    b.appendChild(head);
    var line = el("div", "prob");
    var bar = el("span", "bar");
    var fill = el("span", "fill");
    fill.style.width = (Math.max(0, Math.min(1, p)) * 100).toFixed(1) + "%";
    bar.appendChild(fill);
    line.appendChild(bar);
    line.appendChild(el("span", "pct", (100 * p).toFixed(1) + "%"));
    b.appendChild(line);
    b.addEventListener("click", function () { select(k); });
    return b;
  }

  function showResult(data) {
    result = data;
    state.selected = data.best;
    state.glimpse = "mean";
    $("results").hidden = false;
    renderCards();
    fillGlimpses();
    draw();
  }

  function renderCards() {
    var box = $("ranked");
    box.textContent = "";
    result.order.forEach(function (k, r) {
      box.appendChild(card(k, choiceName(k), result.probabilities[k], k === result.best, "#" + (r + 1)));
    });
    var gen = $("generated");
    gen.textContent = "";
    $("generated-box").hidden = !result.generated.length;
    var K = result.choices.length;
    result.generated.forEach(function (g, j) {
      gen.appendChild(card(K + j, g.answer, g.p, false, "#" + (j + 1)));
    });
  }

  function fillGlimpses() {
    var sel = $("glimpse");
    sel.textContent = "";
    var words = stepWords();
    var maps = shownMaps() || [];
    $("glimpse-label").textContent = words ? "Word" : "Glimpse";
    var o = el("option", null, words ? "mean of " + words.length + " words" : "mean of " + maps.length + " glimpses");
    o.value = "mean";
    sel.appendChild(o);
    var n = words ? words.length : maps.length;
    for (var g = 0; g < n; g++) {
      o = el("option", null, words ? "word " + (g + 1) + ": “" + words[g] + "”" : "glimpse " + (g + 1));
      o.value = String(g);
      sel.appendChild(o);
    }
    sel.value = String(state.glimpse);
  }

  function select(k) {
    state.selected = k;
    var n = (stepWords() || shownMaps() || []).length;
    if (state.glimpse !== "mean" && state.glimpse >= n) state.glimpse = "mean";
    renderCards();
    fillGlimpses();
    draw();
  }

  // ---------------------------------------------------------------- start
  function setup(data) {
    info = data;
    $("run-info").textContent = data.run + " · " + data.task + " · " + data.variant +
      (data.head === "decoder" ? " · decoder head" : "");
    var pointing = data.task === "pointing";
    $("choices-text").hidden = pointing;
    $("choices-boxes").hidden = !pointing;
    if (pointing) setupBoxes();
    var strip = $("samples");
    data.samples.forEach(function (s) {
      var t = el("img");
      t.src = s.url;
      t.alt = "test image " + s.id;
      t.title = "test image " + s.id;
      t.dataset.id = String(s.id);
      t.addEventListener("click", function () { useSample(s.id, s.url); });
      strip.appendChild(t);
    });
    draw();
    document.body.dataset.ready = "1";
  }

  $("file").addEventListener("change", function (e) { useFile(e.target.files[0]); });
  var drop = $("drop");
  drop.addEventListener("dragover", function (e) { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (e) {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) useFile(e.dataTransfer.files[0]);
  });
  $("ask-form").addEventListener("submit", ask);
  $("opacity").addEventListener("input", function (e) { state.opacity = Number(e.target.value); draw(); });
  $("glimpse").addEventListener("change", function (e) {
    state.glimpse = e.target.value === "mean" ? "mean" : Number(e.target.value);
    draw();
  });
  window.VQAServe = { state: state, select: select };
  fetch("api/info").then(function (r) { return r.json(); }).then(setup).catch(function () {
    message("the server cannot be reached: is `make serve` still running?", false);
  });
})();
