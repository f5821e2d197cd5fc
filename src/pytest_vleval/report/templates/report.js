(function () {
  "use strict";
  // The cases come as one JSON block (#vl-cases) and are shown a page at a time; every value is set as text
  // (textContent), never parsed as HTML. Golden caption sets are in the page itself and are filtered in place.
  var block = document.getElementById("vl-cases");
  var data = block ? JSON.parse(block.textContent) : {cards: [], images: [], per_page: 100};
  var cards = data.cards;
  var list = document.getElementById("case-list");
  var selects = Array.prototype.slice.call(document.querySelectorAll("select[data-filter]"));
  var search = document.getElementById("f-text");
  var count = document.getElementById("f-count");
  var pageText = document.getElementById("f-page");
  var prev = document.getElementById("f-prev");
  var next = document.getElementById("f-next");
  var golden = Array.prototype.slice.call(document.querySelectorAll("article.golden"));
  var page = 0;
  var matching = [];
  var haystacks = cards.map(function (card) {
    var parts = [card.suite, card.case_id];
    card.turns.forEach(function (t) { parts.push(t[0], t[1]); });
    card.rows.forEach(function (r) {
      parts.push(r.model, r.error || "");
      r.turns.forEach(function (t) { parts.push(t.answer, t.extracted || "", t.detail || ""); });
    });
    return parts.join("\n").toLowerCase();
  });

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") { node.textContent = attrs.text == null ? "" : String(attrs.text); }
      else if (key === "className") { node.className = attrs.className; }
      else { node.setAttribute(key, attrs[key]); }
    });
    (children || []).forEach(function (child) { if (child) { node.appendChild(child); } });
    return node;
  }
  function text(value) { return document.createTextNode(value == null ? "" : String(value)); }
  function value(name) {
    var node = document.getElementById("f-" + name);
    return node ? node.value : "";
  }
  function statusMatches(row, status) {
    if (!status) { return true; }
    if (status === "passed" || status === "error") { return row.status === status; }
    if (status === "failed") { return row.status === "failed" || row.status === "error"; }
    return row.diff === status;
  }
  function rowShown(row, model, status) {
    return (!model || row.model === model) && statusMatches(row, status);
  }

  function thumb(index) {
    var image = data.images[index];
    if (image.uri) {
      return el("img", {className: "thumb", src: image.uri, alt: image.path, title: image.path});
    }
    return el("span", {className: "thumb missing", title: image.path}, [text("image not found:"), el("br"), text(image.path)]);
  }
  function answer(turn) {
    var out = el("span", {}, [
      el("span", {className: "answer", text: turn.answer}), text(" "),
      el("span", {className: (turn.passed ? "good" : "bad") + " small", text: turn.score.toFixed(2)})
    ]);
    if (turn.extracted != null) {
      out.appendChild(text(" "));
      out.appendChild(el("span", {className: "note"}, [text("scored: "), el("span", {className: "answer", text: turn.extracted})]));
    }
    if (turn.detail) { out.appendChild(text(" ")); out.appendChild(el("span", {className: "note", text: turn.detail})); }
    if (turn.format_issue) {
      out.appendChild(text(" "));
      out.appendChild(el("span", {className: "bad small", text: "format: " + turn.format_issue}));
    }
    if (turn.sent != null) {
      out.appendChild(el("details", {className: "note"}, [el("summary", {text: "sent"}), text(turn.sent)]));
    }
    if (turn.judge_reply != null) {
      var reply = el("details", {className: "note", open: ""}, [el("summary", {text: "the judge's unreadable reply"}), text(turn.judge_reply)]);
      out.appendChild(reply);
    }
    return out;
  }
  function shownBefore(shown) {
    var box = el("div", {className: "text"});
    if (Array.isArray(shown)) {
      shown.forEach(function (piece) {
        box.appendChild(piece[0] === "=" ? text(piece[1]) : el(piece[0] === "-" ? "del" : "ins", {text: piece[1]}));
      });
    } else {
      box.textContent = shown == null ? "" : String(shown);
    }
    return box;
  }
  function answerRow(row, model, status) {
    var cell = el("td", {className: "text"});
    if (row.error && !row.turns.length) {
      cell.appendChild(el("span", {className: "bad", text: "error: " + row.error}));
    } else if (row.turns.length === 1) {
      cell.appendChild(answer(row.turns[0]));
    } else {
      cell.appendChild(el("ol", {}, row.turns.map(function (t) { return el("li", {}, [answer(t)]); })));
      if (row.error) { cell.appendChild(el("div", {className: "bad", text: "error: " + row.error})); }
    }
    var tr = el("tr", {"data-model": row.model, "data-status": row.status, "data-diff": row.diff}, [
      el("th", {className: "model", text: row.model}), cell,
      el("td", {className: "num", text: row.score.toFixed(3)}),
      el("td", {className: row.status === "passed" ? "good" : "bad", text: row.verdict})
    ]);
    if (data.compared) {
      if (row.before == null) {
        tr.appendChild(el("td", data.exact ? {className: "note", text: "not in baseline"} : {}));
      } else {
        var b = row.before;
        tr.appendChild(el("td", {className: "diff"}, [
          el("span", {className: "badge " + b.mark, text: b.label}), text(" "),
          el("span", {className: "note", text: "was " + b.score.toFixed(3) + " " + (b.passed ? "PASS" : "FAIL")}),
          shownBefore(b.shown)
        ]));
      }
    }
    tr.hidden = !rowShown(row, model, status);
    return tr;
  }
  function article(card, position, model, status) {
    var title = el("h3", {}, [el("span", {className: "suite", text: card.suite}), text(" :: " + card.case_id)]);
    if (card.line) { title.appendChild(text(" ")); title.appendChild(el("span", {className: "note", text: "line " + card.line})); }
    var turns = el("table", {className: "turns"}, [el("tr", {}, ["#", "question", "expected", "scorer"].map(function (h) {
      return el("th", {text: h});
    }))]);
    card.turns.forEach(function (t, i) {
      turns.appendChild(el("tr", {}, [
        el("td", {className: "num", text: i + 1}), el("td", {className: "text", text: t[0]}),
        el("td", {className: "text", text: t[1]}), el("td", {text: t[2] + " \u2265 " + t[3]})
      ]));
    });
    var heads = ["model", "answer", "score", "result"].concat(data.compared ? ["vs baseline"] : []);
    var answers = el("table", {className: "answers"}, [el("tr", {}, heads.map(function (h) { return el("th", {text: h}); }))]);
    card.rows.forEach(function (row) { answers.appendChild(answerRow(row, model, status)); });
    return el("article", {className: "case", id: "case-" + position, "data-suite": card.suite}, [
      title,
      el("div", {className: "case-body"}, [
        el("div", {className: "images"}, card.images.map(thumb)),
        el("div", {className: "detail"}, [turns, answers])
      ])
    ]);
  }

  function filter() {
    var suite = value("suite"), status = value("status"), model = value("model");
    var needle = search ? search.value.trim().toLowerCase() : "";
    matching = [];
    cards.forEach(function (card, i) {
      if (suite && card.suite !== suite) { return; }
      if (needle && haystacks[i].indexOf(needle) < 0) { return; }
      if (card.rows.some(function (row) { return rowShown(row, model, status); })) { matching.push(i); }
    });
    golden.forEach(function (set) {
      var any = false;
      set.querySelectorAll("tr[data-model]").forEach(function (row) {
        row.hidden = !!model && row.dataset.model !== model;
        if (!row.hidden) { any = true; }
      });
      set.hidden = !(any && (!suite || set.dataset.suite === suite) && !status
        && (!needle || set.textContent.toLowerCase().indexOf(needle) >= 0));
    });
    page = 0;
    show();
  }
  function show() {
    if (!list) { return; }
    var size = data.per_page || 100;
    var pages = Math.max(1, Math.ceil(matching.length / size));
    page = Math.min(Math.max(page, 0), pages - 1);
    var model = value("model"), status = value("status");
    var fragment = document.createDocumentFragment();
    matching.slice(page * size, (page + 1) * size).forEach(function (i) {
      fragment.appendChild(article(cards[i], i, model, status));
    });
    list.textContent = "";
    list.appendChild(fragment);
    if (count) { count.textContent = matching.length + " of " + cards.length + " cases shown"; }
    if (pageText) { pageText.textContent = "page " + (page + 1) + " of " + pages; }
    if (prev) { prev.disabled = page === 0; }
    if (next) { next.disabled = page >= pages - 1; }
  }
  selects.forEach(function (node) { node.addEventListener("change", filter); });
  if (search) { search.addEventListener("input", filter); }
  [[prev, -1], [next, 1]].forEach(function (pair) {
    if (pair[0]) { pair[0].addEventListener("click", function () { page += pair[1]; show(); window.scrollTo(0, list.offsetTop); }); }
  });
  filter();
})();
