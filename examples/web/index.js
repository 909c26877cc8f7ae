// Uses its three dependencies (one scoped, one with a dependency of its own) and prints a small HTML page.
const is = require("@sindresorhus/is");
const escapeHtml = require("escape-html");
const isOdd = require("is-odd");

const items = [1, 2, 3, "<script>"];
const rows = items.map((x) => {
  const kind = is.number(x) ? (isOdd(x) ? "odd" : "even") : is(x);
  return `  <li>${escapeHtml(String(x))}: ${kind}</li>`;
});
console.log(["<ul>", ...rows, "</ul>", "<p>built hermetically by ssf</p>"].join("\n"));
