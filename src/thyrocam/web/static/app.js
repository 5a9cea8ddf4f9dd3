// thyrocam page: upload, descriptors, /predict and /explain, in-page re-blending of the CAM.
// No framework and no external assets; server text is always inserted as text, never as HTML.
(() => {
  "use strict";

  const cfg = JSON.parse(document.getElementById("thyrocam-config").textContent);
  const $ = (id) => document.getElementById(id);
  const state = {
    lang: cfg.lang,
    file: null, // Blob sent as "file"
    fileName: "",
    image: null, // HTMLImageElement of the preview (null when the browser cannot decode it)
    roi: null, // [x0, y0, x1, y1] in frame pixels
    autoRoi: null, // the box the model proposed (roi_source "auto"); drawn dashed, never sent
    result: null, // last /predict or /explain answer
    cam: null, // { W, H, base: Uint8ClampedArray, heat: Uint8ClampedArray }
    busy: false,
  };

  const t = (key, vars) => {
    let text = cfg.strings[state.lang][key] ?? cfg.strings.en[key] ?? key;
    for (const [k, v] of Object.entries(vars || {})) text = text.replace(`{${k}}`, String(v));
    return text;
  };
  const vocabLabel = (field, value) => cfg.vocabLabels[state.lang][field]?.[value] ?? String(value);

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  // ---- language ------------------------------------------------------------------------
  function applyLanguage(lang) {
    state.lang = lang;
    document.documentElement.lang = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) {
      if (node.id === "roi-text") continue;
      node.textContent = t(node.dataset.i18n);
    }
    for (const node of document.querySelectorAll("[data-i18n-aria]")) {
      node.setAttribute("aria-label", t(node.dataset.i18nAria));
    }
    for (const option of document.querySelectorAll("option[data-vocab]")) {
      option.textContent = vocabLabel(option.dataset.vocab, option.value);
    }
    for (const option of document.querySelectorAll("option[data-target-field]")) {
      option.textContent = targetLabel(option.value);
    }
    for (const group of document.querySelectorAll("optgroup[data-i18n-label]")) {
      group.label = t(group.dataset.i18nLabel);
    }
    for (const link of document.querySelectorAll(".lang-switch a")) {
      const active = link.dataset.lang === lang;
      link.classList.toggle("active", active);
      link.setAttribute("aria-current", active ? "true" : "false");
    }
    updateRoiText();
    if (state.result) renderResult(state.result);
    renderExamples();
  }

  for (const link of document.querySelectorAll(".lang-switch a")) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const lang = link.dataset.lang;
      document.cookie = `${cfg.langCookie}=${lang}; path=/; max-age=31536000; SameSite=Lax`;
      history.replaceState(null, "", `?lang=${lang}`);
      applyLanguage(lang);
    });
  }

  // ---- image and nodule box ------------------------------------------------------------
  function setFile(blob, name) {
    state.file = blob;
    state.fileName = name || "image";
    state.roi = null;
    state.autoRoi = null;
    clearOutput();
    $("dropzone").classList.add("has-image");
    $("preview-wrap").classList.remove("hidden");
    $("roi-row").classList.remove("hidden");
    const url = URL.createObjectURL(blob);
    return new Promise((resolve) => {
      const img = new Image();
      img.onload = () => {
        state.image = img;
        $("preview").classList.remove("hidden");
        $("preview-unavailable").classList.add("hidden");
        drawPreview();
        resolve(true);
      };
      img.onerror = () => {
        state.image = null;
        $("preview").classList.add("hidden");
        $("preview-unavailable").classList.remove("hidden");
        resolve(false);
      };
      img.src = url;
    }).finally(() => URL.revokeObjectURL(url));
  }

  // A box (x0, y0, x1, y1 in frame pixels) dashed in `colour`; `dash` is [on, off] in line
  // widths, and the line scales with the frame so it reads the same at any size.
  function strokeDashedBox(ctx, box, dash, colour) {
    const [x0, y0, x1, y1] = box;
    const line = Math.max(2, ctx.canvas.width / 280);
    ctx.lineWidth = line;
    ctx.setLineDash(dash.map((n) => line * n));
    ctx.strokeStyle = colour;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    ctx.setLineDash([]);
  }

  function drawPreview() {
    const canvas = $("preview");
    const img = state.image;
    if (!img) return;
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    canvas.dataset.frame = `${img.naturalWidth}x${img.naturalHeight}`;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    if (state.roi) {
      strokeDashedBox(ctx, state.roi, [4, 3], "#ffd166");
    } else if (state.autoRoi) {
      // The model's proposal: dashed in its own colour; drawing a box replaces it.
      strokeDashedBox(ctx, state.autoRoi, [3, 3], "#4cc9f0");
    }
    canvas.dataset.roiSource = state.roi ? "user" : state.autoRoi ? "auto" : "";
    canvas.dataset.roi = (state.roi || state.autoRoi || []).map((v) => Math.round(v)).join(",");
    updateRoiText();
  }

  function updateRoiText() {
    $("roi-text").textContent = state.roi
      ? state.roi.map((v) => Math.round(v)).join(", ")
      : state.autoRoi
        ? `${state.autoRoi.map((v) => Math.round(v)).join(", ")} · ${t("roi_auto")}`
        : t("roi_none");
  }

  function framePoint(event) {
    const canvas = $("preview");
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * canvas.width) / rect.width;
    const y = ((event.clientY - rect.top) * canvas.height) / rect.height;
    return [Math.min(Math.max(x, 0), canvas.width), Math.min(Math.max(y, 0), canvas.height)];
  }

  let dragStart = null;
  $("preview").addEventListener("pointerdown", (event) => {
    if (!state.image) return;
    dragStart = framePoint(event);
    $("preview").setPointerCapture(event.pointerId);
  });
  $("preview").addEventListener("pointermove", (event) => {
    if (!dragStart) return;
    const [x, y] = framePoint(event);
    const [sx, sy] = dragStart;
    // A click or a jitter is not a box.
    if (Math.abs(x - sx) < 4 || Math.abs(y - sy) < 4) return;
    state.roi = [Math.min(sx, x), Math.min(sy, y), Math.max(sx, x), Math.max(sy, y)];
    state.autoRoi = null;
    drawPreview();
  });
  const endDrag = () => {
    if (dragStart && state.roi) clearOutput();
    dragStart = null;
  };
  $("preview").addEventListener("pointerup", endDrag);
  $("preview").addEventListener("pointercancel", endDrag);
  $("clear-roi").addEventListener("click", () => {
    state.roi = null;
    state.autoRoi = null;
    clearOutput();
    drawPreview();
  });
  $("change-image").addEventListener("click", () => $("file-input").click());

  $("file-input").addEventListener("change", () => {
    const file = $("file-input").files[0];
    if (file) pickFile(file, file.name);
  });

  function pickFile(blob, name) {
    hideError();
    if (blob.size > cfg.maxUploadBytes) {
      showError(t("err_too_big", { mb: Math.round(cfg.maxUploadBytes / 1048576) }));
      return;
    }
    setFile(blob, name);
  }

  const dropzone = $("dropzone");
  for (const target of [dropzone, $("preview-wrap")]) {
    target.addEventListener("dragover", (event) => {
      event.preventDefault();
      dropzone.classList.add("dragover");
    });
    target.addEventListener("dragleave", () => dropzone.classList.remove("dragover"));
    target.addEventListener("drop", (event) => {
      event.preventDefault();
      dropzone.classList.remove("dragover");
      const file = event.dataTransfer.files[0];
      if (file) pickFile(file, file.name);
    });
  }

  // ---- examples ------------------------------------------------------------------------
  let examples = [];
  function renderExamples() {
    const list = $("examples");
    list.replaceChildren();
    $("examples-none").classList.toggle("hidden", examples.length > 0);
    for (const ex of examples) {
      const grade = ex.tirads ? `TI-RADS ${ex.tirads}` : "TI-RADS –";
      const label = ex.label ? t(`label_${ex.label}`) : "";
      const caption = el("span", { class: "example-caption" }, [
        el("strong", { text: `${t("case")} ${ex.case}` }),
        el("span", { text: grade }),
      ]);
      if (ex.label) caption.append(el("i", { class: `dot dot--${ex.label}`, title: label }));
      const button = el("button", { type: "button", class: "example", "data-example": ex.id }, [
        el("img", { src: ex.image_url, alt: `${t("case")} ${ex.case}`, loading: "lazy" }),
        caption,
      ]);
      button.title = [`${t("case")} ${ex.case}`, grade, label].filter(Boolean).join(" · ");
      button.addEventListener("click", () => loadExample(ex));
      list.append(button);
    }
  }

  async function loadExample(ex) {
    hideError();
    let blob;
    try {
      const response = await fetch(ex.image_url);
      if (!response.ok) throw new Error(`${response.status}`);
      blob = await response.blob();
    } catch (err) {
      showError(`${t("err_network")} (${err.message})`);
      return;
    }
    for (const field of cfg.fields) {
      const value = ex.clinical[field];
      $(`f-${field}`).value = value === null || value === undefined ? "" : String(value);
    }
    $("use-clinical").checked = true;
    syncClinical();
    await setFile(blob, `case_${ex.case}_${ex.view}.jpg`);
    state.roi = ex.roi ? ex.roi.slice() : null;
    drawPreview();
  }

  fetch("examples")
    .then((r) => (r.ok ? r.json() : []))
    .then((list) => {
      examples = list;
      renderExamples();
    })
    .catch(() => renderExamples());

  // ---- descriptors ---------------------------------------------------------------------
  function syncClinical() {
    const on = $("use-clinical").checked;
    $("fields").classList.toggle("disabled", !on);
    for (const node of $("fields").querySelectorAll("select, input")) node.disabled = !on;
    $("clinical-off").classList.toggle("hidden", on);
  }
  $("use-clinical").addEventListener("change", syncClinical);
  syncClinical();

  // ---- requests ------------------------------------------------------------------------
  function buildForm(withExplain) {
    const form = new FormData();
    form.append("file", state.file, state.fileName);
    if ($("use-clinical").checked) {
      form.append("use_clinical", "1");
      for (const field of cfg.fields) form.append(field, $(`f-${field}`).value.trim());
    }
    if (state.roi) form.append("roi", state.roi.map((v) => v.toFixed(1)).join(","));
    if (withExplain) {
      form.append("method", $("method").value);
      // "auto" (the default choice): the server explains the class it predicts.
      form.append("target", $("target").value);
      form.append("alpha", String(Number($("opacity").value) / 100));
      // Each descriptor's contribution only means something when descriptors are used.
      if ($("use-clinical").checked) form.append("attributions", "1");
    }
    return form;
  }

  async function post(path, form) {
    let response;
    try {
      response = await fetch(path, { method: "POST", body: form });
    } catch {
      throw new Error(t("err_network"));
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const detail = body && body.error ? body.error : response.statusText;
      throw new Error(`${response.status} · ${detail}`);
    }
    return body;
  }

  async function run(withExplain) {
    hideError();
    if (!state.file) {
      showError(t("err_no_image"));
      return;
    }
    const button = withExplain ? $("explain-btn") : $("predict-btn");
    setBusy(true, button);
    try {
      const form = buildForm(withExplain);
      const body = await post(withExplain ? "explain" : "predict", form);
      body.requestedTarget = withExplain ? form.get("target") : null;
      state.result = body;
      if (!state.roi) {
        // No box drawn: show the one the model found (if any); the user may redraw it.
        state.autoRoi = body.roi_source === "auto" && body.roi ? body.roi : null;
        drawPreview();
      }
      renderResult(body);
      if (withExplain) await renderCam(body);
      else $("cam-card").classList.add("hidden");
      // A DICOM upload (the answer names its frame) can have its results as DICOM too.
      $("download-dicom-btn").classList.toggle("hidden", !withExplain || body.frame == null);
    } catch (err) {
      showError(err.message);
    } finally {
      setBusy(false, button);
    }
  }
  $("predict-btn").addEventListener("click", () => run(false));
  $("explain-btn").addEventListener("click", () => run(true));

  function setBusy(busy, button) {
    state.busy = busy;
    for (const b of [$("predict-btn"), $("explain-btn")]) b.disabled = busy;
    button.textContent = busy ? t("working") : t(button.dataset.i18n);
  }

  function showError(message) {
    $("error").textContent = message;
    $("error").classList.remove("hidden");
  }
  function hideError() {
    $("error").classList.add("hidden");
  }

  function clearOutput() {
    state.result = null;
    state.cam = null;
    $("result").classList.add("hidden");
    $("result-empty").classList.remove("hidden");
    $("cam-card").classList.add("hidden");
    $("cam-overlay").dataset.ready = "0";
  }

  // ---- result: probability, label, ACR TI-RADS -----------------------------------------
  const pct = (p) => `${(100 * p).toFixed(1)} %`;

  function renderResult(body) {
    const box = $("result");
    box.replaceChildren();
    const verdict = el("div", { class: "verdict" }, [
      el("span", {
        class: `verdict-label verdict-label--${body.label}`,
        id: "result-label",
        "data-label": body.label,
        text: t(`label_${body.label}`),
      }),
      el("span", { class: "verdict-prob", id: "result-prob", text: pct(body.probability) }),
    ]);
    const marker = el("div", { class: "probbar-fill" });
    marker.style.left = `${100 * body.probability}%`;
    const threshold = el("div", { class: "probbar-threshold" });
    threshold.style.left = `${100 * body.threshold}%`;
    const summary = el("div", { class: "result-summary" }, [
      verdict,
      el("div", { class: "verdict-caption", text: t("probability") }),
      el("div", { class: "probbar" }, [threshold, marker]),
      el("div", { class: "probbar-legend" }, [
        el("span", { text: "0 %" }),
        el("span", { text: "100 %" }),
      ]),
      el("div", { class: "threshold-note", text: `${t("threshold")}: ${pct(body.threshold)}` }),
    ]);
    if (body.missing && body.missing.length) {
      const chips = el("div", { class: "chips" }, [el("span", { text: `${t("missing")}:` })]);
      for (const field of body.missing) {
        chips.append(el("span", { class: "chip", text: t(`f_${field}`) }));
      }
      summary.append(chips);
    }
    for (const warning of body.warnings || []) {
      const text =
        warning === cfg.roiWarning ? t("warn_roi") : warning === cfg.noNoduleWarning ? t("warn_no_nodule") : warning;
      summary.append(el("p", { class: "warning", text }));
    }
    const tirads = tiradsTable(body.tirads, body.clinical);
    box.append(el("div", { class: "result-layout" }, [summary, tirads]));
    // Across the whole card: four columns, and the held-out accuracy needs the room.
    if (body.estimated) box.append(estimatedBlock(body));
    $("result-empty").classList.add("hidden");
    box.classList.remove("hidden");
    if (state.cam) renderCamText(body);
  }

  // A table with a caption and one row of column headings (the body is the caller's).
  function headedTable(attrs, caption, headings) {
    const table = el("table", attrs);
    table.append(el("caption", { text: caption }));
    table.append(el("thead", {}, [el("tr", {}, headings.map((text) => el("th", { text })))]));
    return table;
  }

  function tiradsTable(tirads, clinical) {
    const source = {
      composition: "composition",
      echogenicity: "echogenicity",
      margins: "margins",
      echogenic_foci: "calcifications",
    };
    const table = headedTable(
      { class: "tirads", id: "tirads-table" },
      t("tirads_heading"),
      [t("feature"), t("value"), t("points")],
    );
    const tbody = el("tbody");
    // The ACR chart's order (JSON objects arrive with sorted keys).
    for (const feature of cfg.tiradsFeatures) {
      const points = tirads.points[feature];
      const field = source[feature];
      const raw = field ? clinical[field] : null;
      const known = raw !== null && raw !== undefined;
      let value = known ? vocabLabel(field, raw) : t("not_recorded").replace(/[—\s]+/g, " ").trim();
      if (feature === "shape") value = t("shape_missing");
      tbody.append(
        el("tr", {}, [
          el("td", { text: t(`t_${feature}`) }),
          el("td", { class: known ? "" : "missing", text: value }),
          el("td", { class: "num", text: points === null ? "–" : String(points) }),
        ]),
      );
    }
    const advice =
      tirads.fna_threshold_cm === null
        ? t("no_fna")
        : t("fna", { fna: tirads.fna_threshold_cm, follow: tirads.follow_up_threshold_cm });
    tbody.append(
      el("tr", { class: "total" }, [
        el("td", { text: `${t("total")} · ${t("level")}` }),
        el("td", {}, [el("span", { class: "level", id: "tirads-level", text: tirads.level }), ` ${advice}`]),
        el("td", { class: "num", text: String(tirads.total) }),
      ]),
    );
    table.append(tbody);
    const wrap = el("div", {}, [table, el("p", { class: "hint", text: t("shape_note") })]);
    if (tirads.is_partial) wrap.append(el("p", { class: "hint", text: t("tirads_partial") }));
    return wrap;
  }

  // The image descriptors as the run's heads read them, beside the entered ones, and the
  // TI-RADS level with the missing ones taken from the image (labelled as an estimate).
  function estimatedBlock(body) {
    const table = headedTable(
      { class: "tirads estimated", id: "estimated-table" },
      t("estimated_heading"),
      [t("feature"), t("estimated_entered"), t("estimated_image"), t("estimated_held_out")],
    );
    const tbody = el("tbody");
    // The form's order (JSON objects arrive with sorted keys).
    for (const field of cfg.fields.filter((f) => body.estimated[f])) {
      const guess = body.estimated[field];
      const entered = body.clinical[field];
      const known = entered !== null && entered !== undefined;
      tbody.append(
        el("tr", { "data-field": field }, [
          el("td", { text: t(`f_${field}`) }),
          el("td", { class: known ? "" : "missing", text: known ? vocabLabel(field, entered) : "–" }),
          el("td", { class: "estimate", text: `${vocabLabel(field, guess.value)} (${pct(guess.probability)})` }),
          heldOutCell(guess),
        ]),
      );
    }
    table.append(tbody);
    const wrap = el("div", { class: "estimated-wrap" }, [table, el("p", { class: "hint", text: t("estimated_note") })]);
    const withheld = body.estimated_withheld || [];
    if (withheld.length) {
      const fields = withheld.map((f) => t(`f_${f}`)).join(", ");
      wrap.append(el("p", { class: "hint withheld", id: "estimated-withheld", text: t("estimated_withheld", { fields }) }));
    }
    const fromImage = body.tirads_estimated;
    if (fromImage) {
      const fields = fromImage.from_image.map((f) => t(`f_${f}`)).join(", ");
      wrap.append(
        el("p", { class: "tirads-estimate", id: "tirads-estimated" }, [
          el("strong", { text: `${t("tirads_from_image")}: ` }),
          el("span", { class: "level", id: "tirads-estimated-level", text: fromImage.level }),
          ` (${t("total")} ${fromImage.total}) · ${t("tirads_from_image_note", { fields })}`,
        ]),
      );
      // Fields withheld (or never estimable) stay missing: the level is then a lower bound.
      if (fromImage.is_partial) wrap.append(el("p", { class: "hint", id: "tirads-estimated-partial", text: t("tirads_from_image_partial") }));
    }
    return wrap;
  }

  // How well this head read the run's held-out frames, beside always answering the
  // commonest value: a clinician must see when an estimate is no better than a guess.
  function heldOutCell(guess) {
    const q = guess.held_out;
    if (!q) return el("td", { class: "held-out unknown", text: t("held_out_unknown") });
    // Whole percent: on a few dozen held-out frames a decimal would claim precision.
    const whole = (p) => `${Math.round(100 * p)} %`;
    const numbers = el("span", { class: "nums" }, [
      el("span", { class: "rates", text: t("held_out_value", { acc: whole(q.accuracy), base: whole(q.baseline) }) }),
      el("span", { class: "count", text: ` n=${q.n}` }),
    ]);
    if (guess.beats_baseline !== false) return el("td", { class: "held-out" }, [numbers]);
    return el("td", { class: "held-out weak" }, [numbers, el("span", { class: "flag", text: t("held_out_weak") })]);
  }

  // ---- Grad-CAM: draw the server's overlay, re-blend locally from the raw grid ---------
  // matplotlib's "jet" (the server's colormap) as piecewise-linear segments per channel.
  const JET = [
    [[0, 0], [0.35, 0], [0.66, 1], [0.89, 1], [1, 0.5]],
    [[0, 0], [0.125, 0], [0.375, 1], [0.64, 1], [0.91, 0], [1, 0]],
    [[0, 0.5], [0.11, 1], [0.34, 1], [0.65, 0], [1, 0]],
  ];
  function jetChannel(segments, v) {
    for (let i = 1; i < segments.length; i++) {
      const [x1, y1] = segments[i];
      if (v <= x1) {
        const [x0, y0] = segments[i - 1];
        return y0 + ((v - x0) * (y1 - y0)) / (x1 - x0);
      }
    }
    return segments[segments.length - 1][1];
  }
  // 256 entries at i / 255, rounded to bytes as the server's colorize_cam does.
  const JET_LUT = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    for (let c = 0; c < 3; c++) JET_LUT[i * 3 + c] = Math.floor(jetChannel(JET[c], i / 255) * 255 + 0.5);
  }

  // The grid (layer resolution) upsampled bilinearly over the box, as the server places it.
  function camOnFrame(cam) {
    const [W, H] = cam.frame_size;
    const grid = cam.grid;
    const gh = grid.length;
    const gw = grid[0].length;
    const [x0, y0, x1, y1] = cam.box;
    // Bilinear sample at (fx, fy), fractions of the box, pixel centres at (i + 0.5) / n.
    const sample = (fx, fy) => {
      const u = Math.min(Math.max(fx * gw - 0.5, 0), gw - 1);
      const v = Math.min(Math.max(fy * gh - 0.5, 0), gh - 1);
      const c0 = Math.floor(u);
      const r0 = Math.floor(v);
      const c1 = Math.min(c0 + 1, gw - 1);
      const r1 = Math.min(r0 + 1, gh - 1);
      const wx = u - c0;
      const wy = v - r0;
      const top = grid[r0][c0] * (1 - wx) + grid[r0][c1] * wx;
      const bottom = grid[r1][c0] * (1 - wx) + grid[r1][c1] * wx;
      return top * (1 - wy) + bottom * wy;
    };
    // The server renormalises over the whole network input (upsampling lowers the peak),
    // padding included, so the same constants come from the S x S input positions.
    const S = cam.input_size;
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < S; j++) {
      for (let i = 0; i < S; i++) {
        const value = sample((i + 0.5) / S, (j + 0.5) / S);
        if (value < lo) lo = value;
        if (value > hi) hi = value;
      }
    }
    const span = hi - lo;
    const values = new Float32Array(W * H);
    // Only the part of the frame the network saw is tinted, as on the server.
    const inside = new Uint8Array(W * H);
    for (let y = 0; y < H; y++) {
      const fy = (y + 0.5 - y0) / (y1 - y0);
      if (fy < 0 || fy > 1) continue;
      for (let x = 0; x < W; x++) {
        const fx = (x + 0.5 - x0) / (x1 - x0);
        if (fx < 0 || fx > 1) continue;
        inside[y * W + x] = 1;
        if (span > 0) values[y * W + x] = Math.min(Math.max((sample(fx, fy) - lo) / span, 0), 1);
      }
    }
    return { values, inside };
  }

  function loadImage(src) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("image"));
      img.src = src;
    });
  }

  async function renderCam(body) {
    const [frame, overlay] = await Promise.all([
      loadImage(body.frame_png_base64),
      loadImage(body.overlay_png_base64),
    ]);
    const W = frame.naturalWidth;
    const H = frame.naturalHeight;
    const original = $("cam-original");
    original.width = W;
    original.height = H;
    const octx = original.getContext("2d");
    octx.drawImage(frame, 0, 0);
    const base = octx.getImageData(0, 0, W, H).data;
    const { values, inside } = camOnFrame(body.cam);
    const heat = new Uint8ClampedArray(W * H * 3);
    for (let i = 0; i < W * H; i++) {
      // matplotlib indexes its 256-entry table with floor(v * 256).
      const k = Math.min(255, Math.floor(values[i] * 256)) * 3;
      heat[i * 3] = JET_LUT[k];
      heat[i * 3 + 1] = JET_LUT[k + 1];
      heat[i * 3 + 2] = JET_LUT[k + 2];
    }
    state.cam = { W, H, base, heat, inside };
    const canvas = $("cam-overlay");
    canvas.width = W;
    canvas.height = H;
    // The server's own blend first; the slider re-blends from the grid from then on.
    canvas.getContext("2d").drawImage(overlay, 0, 0);
    const alpha = Math.round(body.alpha * 100);
    $("opacity").value = String(alpha);
    $("opacity-value").textContent = `${alpha} %`;
    state.methodName = $("method").selectedOptions[0].textContent;
    renderCamText(body);
    $("cam-card").classList.remove("hidden");
    canvas.dataset.ready = "1";
  }

  function blend(alpha) {
    const { W, H, base, heat, inside } = state.cam;
    const canvas = $("cam-overlay");
    const ctx = canvas.getContext("2d");
    const out = ctx.createImageData(W, H);
    const d = out.data;
    for (let i = 0, j = 0, k = 0; i < W * H * 4; i += 4, j += 3, k += 1) {
      const a = inside[k] ? alpha : 0;
      d[i] = (1 - a) * base[i] + a * heat[j];
      d[i + 1] = (1 - a) * base[i + 1] + a * heat[j + 1];
      d[i + 2] = (1 - a) * base[i + 2] + a * heat[j + 2];
      d[i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
  }

  $("opacity").addEventListener("input", () => {
    const value = Number($("opacity").value);
    $("opacity-value").textContent = `${value} %`;
    if (state.cam) blend(value / 100);
  });

  // dicom=1: the same explanation as a Secondary Capture + Comprehensive SR (a zip).
  $("download-dicom-btn").addEventListener("click", async () => {
    hideError();
    const form = buildForm(true);
    if (state.result && state.result.requestedTarget) form.set("target", state.result.requestedTarget);
    form.append("dicom", "1");
    let response;
    try {
      response = await fetch("explain", { method: "POST", body: form });
    } catch {
      showError(t("err_network"));
      return;
    }
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).error || detail;
      } catch {
        // not JSON: keep the status text
      }
      showError(`${response.status} · ${detail}`);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: "thyrocam-dicom.zip" });
    document.body.append(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(url);
  });

  $("download-btn").addEventListener("click", () => {
    const link = el("a", {
      href: $("cam-overlay").toDataURL("image/png"),
      download: `thyrocam-${state.result ? state.result.method : "cam"}-${$("opacity").value}.png`,
    });
    document.body.append(link);
    link.click();
    link.remove();
  });

  // ---- what the map and the descriptors say, in words -----------------------------------
  const targetLabel = (target) => {
    // A descriptor head's value ("calcifications:microcalcifications"), or a class.
    const [field, value] = target.split(":");
    return value === undefined ? t(`target_${target}`) : `${t(`f_${field}`)}: ${vocabLabel(field, value)}`;
  };

  // A run with descriptor heads: each value of each field is a target too.
  if (cfg.descriptorTargets && cfg.descriptorTargets.length) {
    const group = el("optgroup", { label: t("target_descriptors"), "data-i18n-label": "target_descriptors" });
    for (const target of cfg.descriptorTargets) {
      group.append(el("option", { value: target, "data-target-field": target.split(":")[0], text: targetLabel(target) }));
    }
    $("target").append(group);
  }
  // Two decimals with the sign; what rounds to zero shows no sign (no "−0.00").
  const signed = (v) => {
    const digits = Math.abs(v).toFixed(2);
    return digits === "0.00" ? digits : `${v > 0 ? "+" : "−"}${digits}`;
  };
  const sigmoid = (z) => 1 / (1 + Math.exp(-z));

  function renderCamText(body) {
    let caption = `${state.methodName} · ${t("cam_explained", { target: targetLabel(body.target) })}`;
    if (body.requestedTarget === "auto") caption += ` (${t("cam_predicted")})`;
    $("cam-method").textContent = caption;
    $("cam-method").dataset.target = body.target;
    renderImageNetwork(body);
    renderAllZero(body);
    renderAttributions(body.attributions, body.clinical);
  }

  // A stacked-fusion run maps its image network's own logit: say so, with that logit's
  // weight in the probability (0: the descriptors alone decided it).
  function renderImageNetwork(body) {
    const box = $("cam-image-network");
    const weight = body.image_weight;
    box.classList.toggle("hidden", weight == null);
    if (weight == null) {
      delete box.dataset.imageWeight;
      box.textContent = "";
      return;
    }
    box.dataset.imageWeight = String(weight);
    let text = t("cam_image_network", { w: weight.toFixed(2) });
    if (weight === 0) text += ` ${t("cam_image_network_zero")}`;
    box.textContent = text;
  }

  // An empty map is not "no evidence": say which way the image pushed, and what the
  // descriptors did, from the logit and the Shapley values (they sum to the descriptors' part).
  function renderAllZero(body) {
    const box = $("cam-all-zero");
    box.replaceChildren();
    box.classList.toggle("hidden", !body.cam.all_zero);
    if (!body.cam.all_zero) return;
    const values = Object.values(body.attributions || {});
    const delta = values.reduce((a, b) => a + b, 0);
    // A stacked run maps its image network: its own probability (balanced at 0.5) says
    // which way the image pushed; otherwise the logit with every descriptor missing does.
    const network = body.image_weight != null;
    const imageP = network ? body.image_probability : sigmoid(body.logit - delta);
    const threshold = network ? 0.5 : body.threshold;
    const direction = imageP >= threshold ? "malignant" : "benign";
    box.dataset.imagePush = direction;
    box.append(el("span", { text: t("cam_all_zero", { target: targetLabel(body.target) }) }), " ");
    const push = network ? "cam_image_network_push" : "cam_image_push";
    box.append(el("span", { text: t(push, { p: pct(imageP), direction: t(`toward_${direction}`) }) }), " ");
    const note = body.attributions ? t("cam_see_attributions", { delta: signed(delta) }) : t("cam_no_descriptors");
    box.append(el("span", { text: note }));
  }

  // One signed bar per descriptor, scaled to the largest; red right (toward malignant),
  // blue left (toward benign); the field's value beside its name.
  function renderAttributions(attributions, clinical) {
    const box = $("attributions");
    box.replaceChildren();
    if (!attributions || !Object.keys(attributions).length) {
      box.classList.add("hidden");
      return;
    }
    const entries = cfg.fields.filter((f) => f in attributions).map((f) => [f, attributions[f]]);
    const total = entries.reduce((a, [, v]) => a + v, 0);
    const scale = Math.max(...entries.map(([, v]) => Math.abs(v)), Math.abs(total), 1e-9);
    const row = (key, name, detail, value) => {
      const bar = el("div", { class: `attr-bar attr-bar--${value >= 0 ? "pos" : "neg"}` });
      const half = (50 * Math.abs(value)) / scale;
      bar.style.left = value >= 0 ? "50%" : `${50 - half}%`;
      bar.style.width = `${half}%`;
      return el("div", { class: "attr-row", "data-field": key, "data-value": String(value) }, [
        el("span", { class: "attr-name" }, [
          el("span", { text: name }),
          detail ? el("span", { class: "attr-detail", text: detail }) : null,
        ]),
        el("div", { class: "attr-track" }, [bar]),
        el("span", { class: "attr-value", text: signed(value) }),
      ]);
    };
    box.append(el("h3", { text: t("attributions_heading") }));
    box.append(
      el("div", { class: "attr-axis" }, [
        el("span", { text: t("attributions_axis_benign") }),
        el("span", { text: t("attributions_axis_malignant") }),
      ]),
    );
    for (const [field, value] of entries) {
      const raw = clinical ? clinical[field] : null;
      let detail = t("not_recorded").replace(/[—\s]+/g, " ").trim();
      if (raw !== null && raw !== undefined) detail = field === "age" ? String(raw) : vocabLabel(field, raw);
      box.append(row(field, t(`f_${field}`), detail, value));
    }
    const sum = row("total", t("attributions_total"), "", total);
    sum.classList.add("attr-row--total");
    box.append(sum);
    box.append(el("p", { class: "hint", text: t("attributions_note") }));
    box.classList.remove("hidden");
  }
})();
