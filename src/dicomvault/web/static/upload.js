/* Upload: files and whole folders (drag and drop, or the pickers), one STOW-RS request per file
 * (POST /dicom-web/studies, Content-Type: application/dicom), a few at once, with per-file and
 * overall progress and the result the archive gave for each file (PS3.18 10.5.3: the Store
 * Instances Response's ReferencedSOPSequence / FailedSOPSequence with their reason codes). */
(function () {
  "use strict";

  var STOW_URL = "/dicom-web/studies";
  var PARALLEL = 3;
  var MAX_AUTOMATIC_RETRIES = 5; // for 429 and 503 answers, which say "later", not "never"
  var TAG = {
    retrieveUrl: "00081190",
    failedSequence: "00081198",
    referencedSequence: "00081199",
    failureReason: "00081197",
    warningReason: "00081196",
  };
  /* PS3.18 Table 10.5.3-1 / PS3.4 Annex GG and C.4.2.1.4 status codes. */
  var REASONS = {
    0x0110: "processing failure",
    0x0111: "a different instance is already stored under this SOP Instance UID",
    0x0122: "the SOP class is not supported",
    0x0124: "not authorised",
    0xa700: "out of resources (the file may be too large)",
    0xa900: "the data set does not match its SOP class",
    0xb000: "some attributes were coerced",
    0xb006: "some elements were discarded",
    0xb007: "the data set does not match its SOP class",
    0xc000: "not a DICOM file, or one that cannot be understood",
    0xc409: "the study UID differs from the study it was sent to",
  };
  var DUPLICATE = 0x0111;

  var items = [];
  var active = 0;
  var announced = -1;

  function $(id) {
    return document.getElementById(id);
  }

  function hex(code) {
    return "0x" + ("0000" + code.toString(16).toUpperCase()).slice(-4);
  }

  function reasonText(code) {
    return (REASONS[code] || "refused") + " (" + hex(code) + ")";
  }

  /* -- collecting files ---------------------------------------------------------------------- */
  function fromInput(input) {
    var out = [];
    for (var i = 0; i < input.files.length; i++) {
      var file = input.files[i];
      out.push({ file: file, path: file.webkitRelativePath || file.name });
    }
    input.value = "";
    return out;
  }

  function readEntries(reader) {
    return new Promise(function (resolve, reject) {
      reader.readEntries(resolve, reject);
    });
  }

  function entryFile(entry) {
    return new Promise(function (resolve, reject) {
      entry.file(resolve, reject);
    });
  }

  /* A dropped folder, recursively (readEntries answers in batches until an empty one). */
  async function walk(entry, prefix, out) {
    if (entry.isFile) {
      out.push({ file: await entryFile(entry), path: prefix + entry.name });
      return;
    }
    if (!entry.isDirectory) return;
    var reader = entry.createReader();
    for (;;) {
      var batch = await readEntries(reader);
      if (!batch.length) break;
      for (var i = 0; i < batch.length; i++) {
        await walk(batch[i], prefix + entry.name + "/", out);
      }
    }
  }

  async function fromDrop(dataTransfer) {
    /* The items are only readable during the drop event: take the entries first. */
    var entries = [];
    if (dataTransfer.items) {
      for (var i = 0; i < dataTransfer.items.length; i++) {
        var item = dataTransfer.items[i];
        var entry = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
        if (entry) entries.push(entry);
      }
    }
    var files = Array.prototype.slice.call(dataTransfer.files || []);
    if (!entries.length) {
      return files.map(function (file) {
        return { file: file, path: file.name };
      });
    }
    var out = [];
    for (var j = 0; j < entries.length; j++) {
      await walk(entries[j], "", out);
    }
    return out;
  }

  /* -- the table ------------------------------------------------------------------------------ */
  function addRow(item) {
    var row = document.createElement("tr");
    row.className = "upload-row";
    var name = document.createElement("th");
    name.scope = "row";
    name.className = "file-name";
    name.textContent = item.path;
    var progressCell = document.createElement("td");
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + item.path);
    var percent = document.createElement("span");
    percent.className = "percent";
    percent.textContent = " 0 %";
    progressCell.append(bar, percent);
    var result = document.createElement("td");
    result.className = "result";
    result.textContent = "Waiting";
    var actions = document.createElement("td");
    var retry = document.createElement("button");
    retry.type = "button";
    retry.className = "small secondary retry";
    retry.textContent = "Retry";
    retry.setAttribute("aria-label", "Retry " + item.path);
    retry.hidden = true;
    retry.addEventListener("click", function () {
      requeue(item);
      pump();
    });
    actions.append(retry);
    row.append(name, progressCell, result, actions);
    $("upload-rows").append(row);
    item.row = row;
    item.bar = bar;
    item.percent = percent;
    item.result = result;
    item.retry = retry;
  }

  function setProgress(item, fraction) {
    var value = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    item.bar.value = value;
    item.percent.textContent = " " + value + " %";
  }

  function setResult(item, state, text, detail, link) {
    item.state = state;
    item.row.setAttribute("data-state", state);
    item.result.textContent = "";
    var strong = document.createElement("span");
    strong.className = "result-" + state;
    strong.textContent = text;
    item.result.append(strong);
    if (detail) {
      var small = document.createElement("span");
      small.className = "result-detail";
      small.textContent = detail;
      item.result.append(small);
    }
    if (link) {
      var a = document.createElement("a");
      a.href = link;
      a.className = "small";
      a.textContent = "View study";
      item.result.append(" ", a);
    }
    item.retry.hidden = !(state === "failed" || state === "rejected");
  }

  function addFiles(list) {
    if (!list.length) return;
    $("upload-table").hidden = false;
    list.forEach(function (entry) {
      var item = { file: entry.file, path: entry.path, state: "queued", loaded: 0, attempts: 0 };
      items.push(item);
      addRow(item);
    });
    announced = -1;
    updateOverall();
    pump();
  }

  function requeue(item) {
    item.state = "queued";
    item.loaded = 0;
    item.row.setAttribute("data-state", "queued");
    item.result.textContent = "Waiting";
    item.retry.hidden = true;
    setProgress(item, 0);
    announced = -1;
    updateOverall();
  }

  /* -- uploading ------------------------------------------------------------------------------ */
  function pump() {
    while (active < PARALLEL) {
      var next = items.find(function (item) {
        return item.state === "queued";
      });
      if (!next) break;
      send(next);
    }
  }

  function send(item) {
    active += 1;
    item.state = "uploading";
    item.row.setAttribute("data-state", "uploading");
    item.result.textContent = "Uploading";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", STOW_URL);
    xhr.setRequestHeader("Content-Type", "application/dicom");
    xhr.setRequestHeader("Accept", "application/dicom+json");
    xhr.setRequestHeader("X-CSRF-Token", window.dicomvault.csrfToken());
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable && event.total > 0) {
        item.loaded = event.loaded;
        setProgress(item, event.loaded / event.total);
        updateOverall();
      }
    });
    xhr.addEventListener("load", function () {
      finish(item, xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After"));
    });
    xhr.addEventListener("error", function () {
      finish(item, 0, "", null);
    });
    xhr.addEventListener("abort", function () {
      finish(item, 0, "", null);
    });
    item.attempts += 1;
    xhr.send(item.file);
  }

  function finish(item, status, text, retryAfter) {
    active -= 1;
    if ((status === 429 || status === 503) && item.attempts <= MAX_AUTOMATIC_RETRIES) {
      /* "Later": wait as asked, then send again; the file is not failed. */
      var seconds = Math.min(30, Math.max(1, parseInt(retryAfter || "1", 10) || 1));
      item.state = "waiting";
      item.result.textContent = "Busy; retrying in " + seconds + " s";
      setTimeout(function () {
        requeue(item);
        pump();
      }, seconds * 1000);
      pump();
      return;
    }
    setProgress(item, status ? 1 : item.loaded / Math.max(1, item.file.size));
    describe(item, status, parse(text));
    updateOverall();
    pump();
  }

  function parse(text) {
    try {
      return text ? JSON.parse(text) : null;
    } catch (e) {
      return null;
    }
  }

  function firstItem(body, tag) {
    var element = body && body[tag];
    var values = element && element.Value;
    return values && values.length ? values[0] : null;
  }

  function value(element) {
    return element && element.Value && element.Value.length ? element.Value[0] : null;
  }

  function studyLink(body, stored) {
    var url = value(stored[TAG.retrieveUrl]) || value(body[TAG.retrieveUrl]);
    var match = url && /\/studies\/([0-9.]+)/.exec(url);
    return match ? "/studies/" + match[1] : null;
  }

  /* The Store Instances Response (PS3.18 10.5.3) → stored / duplicate / rejected / failed. */
  function describe(item, status, body) {
    if (status === 0) {
      setResult(item, "failed", "Failed", "the connection was interrupted");
      return;
    }
    if (status === 401) {
      setResult(item, "failed", "Failed", "your session has ended — log in again, then retry");
      return;
    }
    var stored = firstItem(body, TAG.referencedSequence);
    if (stored) {
      var warning = value(stored[TAG.warningReason]);
      setResult(
        item,
        "stored",
        "Stored",
        warning === null ? "" : "with a warning: " + reasonText(warning),
        studyLink(body, stored)
      );
      return;
    }
    var failed = firstItem(body, TAG.failedSequence);
    if (failed) {
      var reason = value(failed[TAG.failureReason]);
      if (reason === DUPLICATE) {
        setResult(item, "duplicate", "Duplicate", reasonText(reason));
      } else {
        setResult(item, "rejected", "Rejected", reason === null ? "" : reasonText(reason));
      }
      return;
    }
    var detail = body && typeof body.detail === "string" ? body.detail : "HTTP " + status;
    if (status === 413) detail = "the file is larger than the archive accepts";
    var state = status >= 500 || status === 403 ? "failed" : "rejected";
    setResult(item, state, state === "failed" ? "Failed" : "Rejected", detail);
  }

  /* -- overall progress ----------------------------------------------------------------------- */
  function updateOverall() {
    var total = 0;
    var done = 0;
    var finished = 0;
    var counts = { stored: 0, duplicate: 0, rejected: 0, failed: 0 };
    items.forEach(function (item) {
      var weight = Math.max(1, item.file.size);
      total += weight;
      if (counts.hasOwnProperty(item.state)) {
        counts[item.state] += 1;
        finished += 1;
        done += weight;
      } else if (item.state === "uploading") {
        done += Math.min(weight, item.loaded);
      }
    });
    var percent = total ? Math.floor((done / total) * 100) : 0;
    if (finished === items.length && items.length) percent = 100;
    var bar = $("overall-progress");
    bar.value = percent;
    bar.textContent = percent + " %";
    $("overall-text").textContent =
      finished + " of " + items.length + " files done · " + percent + " %";
    var failedCount = counts.failed + counts.rejected;
    $("retry-failed").hidden = failedCount === 0;
    $("clear-done").hidden = finished === 0 || finished !== items.length;
    var summary =
      counts.stored + " stored, " + counts.duplicate + " duplicate, " +
      counts.rejected + " rejected, " + counts.failed + " failed";
    if (finished === items.length && items.length) {
      $("upload-summary").textContent = "Finished: " + summary + ".";
    } else {
      $("upload-summary").textContent = "";
    }
    /* Screen readers hear quarters, not every percent. */
    var quarter = Math.floor(percent / 25);
    if (quarter !== announced && items.length) {
      announced = quarter;
      $("upload-announcer").textContent = "Upload " + percent + " % done.";
    }
  }

  /* -- live arrivals -------------------------------------------------------------------------- */
  function startLive() {
    var results = $("results");
    var refresher = new window.dicomvault.Refresher(results, null);
    var arrived = 0;
    refresher.schedule();
    window.dicomvault.connectLive({
      status: $("live-status"),
      onInstance: function () {
        arrived += 1;
        $("arrival-count").textContent =
          arrived + (arrived === 1 ? " instance has" : " instances have") +
          " arrived since this page opened.";
        refresher.schedule();
      },
      onMissed: function () {
        refresher.schedule();
      },
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var zone = $("drop-zone");
    if (!zone) return;
    $("file-input").addEventListener("change", function (event) {
      addFiles(fromInput(event.target));
    });
    $("folder-input").addEventListener("change", function (event) {
      addFiles(fromInput(event.target));
    });
    /* A file dropped beside the zone must not replace the page. */
    ["dragover", "drop"].forEach(function (name) {
      document.addEventListener(name, function (event) {
        event.preventDefault();
      });
    });
    zone.addEventListener("dragover", function (event) {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", function () {
      zone.classList.remove("over");
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("over");
      fromDrop(event.dataTransfer).then(addFiles);
    });
    $("retry-failed").addEventListener("click", function () {
      items.forEach(function (item) {
        if (item.state === "failed" || item.state === "rejected") requeue(item);
      });
      pump();
    });
    $("clear-done").addEventListener("click", function () {
      items = [];
      $("upload-rows").textContent = "";
      $("upload-table").hidden = true;
      $("upload-summary").textContent = "";
      updateOverall();
      $("overall-text").textContent = "Nothing uploaded yet.";
    });
    startLive();
  });
})();
