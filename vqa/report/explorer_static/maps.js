/* Attention maps on a canvas (and the safe element helper), shared by the explorer (explorer.js) and the live page (serve.js): the turbo colour
 * map, the stored map encoding ({max, data: base64 of one byte per cell, round(255 * a / max)}), the mean of
 * glimpses (or of a decoder's words), and the overlay drawn over an image. */
(function () {
  "use strict";

  function el(tag, cls, text) {
    // every dataset or user string reaches a page through here or textContent: as text, never as HTML
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // ---------------------------------------------------------------- colour map (turbo, Mikhailov 2019, polynomial)
  var LUT = new Uint8ClampedArray(256 * 3);
  (function () {
    for (var i = 0; i < 256; i++) {
      var x = i / 255;
      var r = 0.13572138 + x * (4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))));
      var g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))));
      var b = 0.1066733 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))));
      LUT[3 * i] = Math.round(255 * Math.min(1, Math.max(0, r)));
      LUT[3 * i + 1] = Math.round(255 * Math.min(1, Math.max(0, g)));
      LUT[3 * i + 2] = Math.round(255 * Math.min(1, Math.max(0, b)));
    }
  })();

  function drawLegendBar(c) {
    if (!c) return;
    var ctx = c.getContext("2d");
    var img = ctx.createImageData(256, 1);
    for (var i = 0; i < 256; i++) {
      img.data[4 * i] = LUT[3 * i];
      img.data[4 * i + 1] = LUT[3 * i + 1];
      img.data[4 * i + 2] = LUT[3 * i + 2];
      img.data[4 * i + 3] = Math.round(255 * (0.15 + 0.85 * i / 255));
    }
    var tmp = document.createElement("canvas");
    tmp.width = 256;
    tmp.height = 1;
    tmp.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(tmp, 0, 0, c.width, c.height);
  }

  function decode(entry, n) {
    // one glimpse's map: {max, data: base64 of n bytes} -> Float32Array of weights
    var out = new Float32Array(n);
    if (!entry || !entry.data) return out;
    var bin = atob(entry.data);
    var scale = Number(entry.max) / 255;
    for (var i = 0; i < n && i < bin.length; i++) out[i] = bin.charCodeAt(i) * scale;
    return out;
  }

  function combine(perCand, glimpse, n) {
    // one candidate's maps [G] -> {values, max} of the shown one (a glimpse, or "mean" of them), or null
    if (!perCand || !perCand.length) return null;
    var values;
    if (glimpse === "mean") {
      values = new Float32Array(n);
      perCand.forEach(function (entry) {
        var v = decode(entry, n);
        for (var i = 0; i < n; i++) values[i] += v[i] / perCand.length;
      });
    } else {
      if (!perCand[glimpse]) return null;
      values = decode(perCand[glimpse], n);
    }
    var max = 0;
    for (var j = 0; j < n; j++) if (values[j] > max) max = values[j];
    return { values: values, max: max };
  }

  var offscreen = null;
  function overlay(values, max, h, w, opacity) {
    if (!offscreen || offscreen.width !== w || offscreen.height !== h) {
      offscreen = document.createElement("canvas");
      offscreen.width = w;
      offscreen.height = h;
    }
    var octx = offscreen.getContext("2d");
    var img = octx.createImageData(w, h);
    for (var i = 0; i < h * w; i++) {
      var v = max > 0 ? values[i] / max : 0;
      var c = Math.max(0, Math.min(255, Math.round(v * 255)));
      img.data[4 * i] = LUT[3 * c];
      img.data[4 * i + 1] = LUT[3 * c + 1];
      img.data[4 * i + 2] = LUT[3 * c + 2];
      img.data[4 * i + 3] = Math.round(255 * v * opacity);
    }
    octx.putImageData(img, 0, 0);
    return offscreen;
  }

    function sizeCanvas(c, w, h) {
    // a canvas shown at w x h CSS pixels, drawn at the screen's resolution: its context, in CSS pixels
    var dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    c.style.width = w + "px";
    c.style.height = h + "px";
    var ctx = c.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  window.VQAMaps = { el: el, sizeCanvas: sizeCanvas, LUT: LUT, drawLegendBar: drawLegendBar, decode: decode, combine: combine, overlay: overlay };
})();
