;; channels.scm: the Guix revision this VM is built from, pinned by full commit.
;; A full 40-hex commit lets `guix time-machine' reuse its cache without
;; touching the network; a branch, tag or short hash would fetch on every run.
;; Update on purpose: run `guix describe -f channels > channels.scm' after
;; `guix pull', then `devvm reload'.
;; Default pin shipped with devvm: GNU Guix v1.5.0.
(list (channel
       (name 'guix)
       (url "https://git.guix.gnu.org/guix.git")
       (branch "master")
       (commit "230aa373f315f247852ee07dff34146e9b480aec")
       (introduction
        (make-channel-introduction
         "9edb3f66fd807b096b48283debdcddccfea34bad"
         (openpgp-fingerprint
          "BBB0 2DDF 2CEA F6A8 0D1D  E643 A2A0 6DF2 A33A 54FA")))))
