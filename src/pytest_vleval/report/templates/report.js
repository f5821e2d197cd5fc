(function () {
  "use strict";
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var search = document.getElementById("f-text");
  var count = document.getElementById("f-count");
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.case, article.golden"));
  function value(name) {
    var el = document.getElementById("f-" + name);
    return el ? el.value : "";
  }
  function statusMatches(row, status) {
    if (!status) { return true; }
    if (status === "passed" || status === "error") { return row.dataset.status === status; }
    if (status === "failed") { return row.dataset.status === "failed" || row.dataset.status === "error"; }
    return row.dataset.diff === status;
  }
  function apply() {
    var suite = value("suite"), status = value("status"), model = value("model");
    var text = search ? search.value.trim().toLowerCase() : "";
    var shown = 0, total = 0;
    cards.forEach(function (card) {
      var isCase = card.classList.contains("case");
      var any = false;
      card.querySelectorAll("tr[data-model]").forEach(function (row) {
        var ok = (!model || row.dataset.model === model) && (!isCase || statusMatches(row, status));
        row.hidden = !ok;
        if (ok) { any = true; }
      });
      var visible = any && (!suite || card.dataset.suite === suite) && (isCase || !status)
        && (!text || card.textContent.toLowerCase().indexOf(text) >= 0);
      card.hidden = !visible;
      if (isCase) { total += 1; if (visible) { shown += 1; } }
    });
    if (count) { count.textContent = shown + " of " + total + " cases shown"; }
  }
  selects.forEach(function (el) { el.addEventListener("change", apply); });
  if (search) { search.addEventListener("input", apply); }
  apply();
})();
