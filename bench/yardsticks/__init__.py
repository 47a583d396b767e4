"""Yardsticks beside the CNNs: photometry measured on the cutouts (photutils) and an off-the-shelf BPZ fit
(desc-bpz), each cached under the survey cache keyed by its inputs. The best-case template fit itself lives
with the simulator (zpeft.simsurvey.reference); zpeft.yardsticks.survey puts the rows together for a pair.
"""
