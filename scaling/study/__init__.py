"""A compute-optimal study of one's own model family: plan an IsoFLOP grid (`plan`), read the
trained sweep back as a table of runs (`runs`), and predict the optimum at a larger budget
(`predict`). The front-end is `workbench scaling plan | runs | predict` (`cli`)."""
