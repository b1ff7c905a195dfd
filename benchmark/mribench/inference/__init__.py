"""Using the models cells logged: find one (locate.py), classify new images with it
(predict.py), test it on a set it has not seen (evaluate.py), register a suite's best (champion.py)."""
