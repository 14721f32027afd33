const express = require("express");
const info = require("./build/info.json");

const app = express();
app.get("/", (req, res) => res.send(`node-pnpm on node ${process.version}, built ${info.built}, a day is ${info.day} ms\n`));
app.listen(process.env.PORT);
